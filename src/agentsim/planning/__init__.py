"""Tools that run many simulations: parameter sweeps, capacity planning, calibration and fidelity."""
