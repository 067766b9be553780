"""The simulation clock: a ``simpy.Environment`` whose one event queue is agentsim's compiled heap.

simpy documents the extension point: an environment subclass may override ``schedule``, ``step``, ``peek``
(simpy's own ``RealtimeEnvironment`` overrides ``step``) and ``now``. :class:`Clock` overrides them so that
every simpy event (a process start, a timeout, a condition) is queued in the same
:class:`~agentsim.engine.events.EventQueue` as the engine's compiled events, in simpy's order
``(time, priority, insertion id)``. simpy's own queue stays empty and no private attribute of simpy is read or
set: the processes, timeouts and events of ``simpy`` work on a :class:`Clock` through simpy's public interface.

``run(until=t)`` behaves as simpy's: it stops at an URGENT event at ``t`` (events due before it run; NORMAL
events due exactly at ``t`` wait for the next ``run``), ``run()`` runs until no event is left, and
``run(until=event)`` until that event is processed. The numeric forms run the compiled loop
(:func:`~agentsim.engine.events.run_until`).
"""

from __future__ import annotations

from typing import Any

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL

from agentsim.engine.events import URGENT, EventQueue, SimpyEntry, Stop, run_until


class Clock(simpy.Environment):
    """A simpy environment backed by one compiled :class:`~agentsim.engine.events.EventQueue` (``events``).

    The engine's components hold ``clock.events`` and post compiled events on it; simpy code uses the clock as
    any ``simpy.Environment``."""

    def __init__(self, initial_time: float = 0.0) -> None:
        super().__init__(initial_time)
        self.events = EventQueue(float(initial_time))

    @property
    def now(self) -> float:
        """The current simulation time."""
        return self.events.now

    def schedule(self, event: Any, priority: int = NORMAL, delay: float = 0) -> None:
        """Queue a simpy ``event`` with ``priority`` to be processed ``delay`` seconds from now."""
        self.events.post_priority(SimpyEntry(event, self), float(delay), int(priority))

    def peek(self) -> float:
        """Time of the next event, or infinity when none is left."""
        return self.events.peek()

    def step(self) -> None:
        """Process the next event; ``simpy.core.EmptySchedule`` when none is left."""
        if not len(self.events):
            raise EmptySchedule
        self.events.step()

    def run(self, until: Any = None) -> Any:
        """Process events until simulated time ``until``, until none is left (``None``), or until the simpy
        event ``until`` has been processed (its value is returned), as ``simpy.Environment.run``."""
        if isinstance(until, simpy.Event):
            return super().run(until)  # simpy's loop over this clock's step()
        if until is None:
            run_until(self.events, None)
            return None
        at = float(until)
        if at <= self.now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = Stop(0.0, 0)
        self.events.post_priority(stop, at - self.now, URGENT)
        run_until(self.events, stop)
        return None
