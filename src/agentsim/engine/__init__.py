"""The simulation engine: the clock and its event heap, the agents that walk task graphs, the row
recorder, and ``run``, which wires a resolved scenario into a simulation."""
