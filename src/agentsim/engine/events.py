"""The simulation's one event queue: a compiled min-heap of events keyed by ``(time, priority, insertion id)``.

A run schedules millions of events (a replica's next step, an agent's next call, a task's start, a tool call's
end). They are compiled objects with a native :meth:`Event.fire`, kept in a :mod:`~agentsim.engine.minheap`
heap ordered by ``(t, seq)``, where ``seq`` packs simpy's two tie-breakers into one integer: the priority in
the high bits and the insertion id in the low ones, so the order is simpy's ``(time, priority, id)``.
Equal-time events of one priority run first-in first-out, and a handler is never run inline "because the delay
is 0".

simpy events (processes, timeouts, conditions) reach this queue through :class:`agentsim.engine.clock.Clock`,
a ``simpy.Environment`` whose ``schedule``/``step``/``peek``/``run`` are backed by the :class:`EventQueue`: each
becomes a :class:`SimpyEntry`, processed exactly as ``Environment.step`` processes an event, through simpy's
public event attributes only. The engine's components never see simpy: they hold the :class:`EventQueue` and
post compiled events on it (this module is compiled with mypyc, see ``setup.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count
from typing import Any, Final, cast

from simpy.core import StopSimulation

from agentsim.engine.minheap import Keyed, pop, push

NORMAL: Final = 1
"""simpy's default event priority (``simpy.events.NORMAL``); the engine's own events all have it."""
URGENT: Final = 0
"""simpy's priority for process starts and a run's stop (``simpy.events.URGENT``): before NORMAL at equal times."""
PRIORITY_SHIFT: Final = 1 << 60
"""``seq = id + (priority - NORMAL) * PRIORITY_SHIFT``: at equal times every URGENT event (seq < 0) precedes every
NORMAL one, then insertion order. Ids stay below 2**60 and seq within mypyc's unboxed integers (|x| < 2**62)."""


class Event(Keyed):
    """An event: :meth:`fire` runs at time ``t``; ``seq`` orders equal times (priority, then insertion id).

    The hot events (a replica's step timer, an agent's next call, a task's start) are compiled subclasses
    whose :meth:`fire` is a direct native call with typed fields, rather than a :class:`Wakeup`'s bound method
    and argument tuple called through Python's generic calling convention."""

    __slots__ = ()

    def fire(self) -> None:
        raise NotImplementedError


class Wakeup(Event):
    """An event that calls ``fn(*args)``."""

    __slots__ = ("args", "fn")

    def __init__(self, t: float, seq: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        super().__init__(t, seq)
        self.fn = fn
        self.args = args

    def fire(self) -> None:
        self.fn(*self.args)


class Stop(Event):
    """The end of :func:`run_until`'s stretch (simpy's ``run(until=t)``: an URGENT event at ``t``)."""

    __slots__ = ()

    def fire(self) -> None:
        pass


class SimpyEntry(Event):
    """A simpy event in the queue. :meth:`fire` is the body of ``simpy.Environment.step`` for it: run its
    callbacks (taken off the event first, so that none is added meanwhile), and re-raise a failure nobody
    defused. ``env`` is the environment that scheduled it (to put the event back when a callback stops the
    simulation part-way, as simpy does)."""

    __slots__ = ("env", "event")

    def __init__(self, event: Any, env: Any) -> None:
        super().__init__(0.0, 0)
        self.event = event
        self.env = env

    def fire(self) -> None:
        event = self.event
        callbacks = event.callbacks
        event.callbacks = None
        done = 0
        try:
            for callback in callbacks:
                done += 1
                callback(event)
        except StopSimulation:
            # As simpy: the remaining callbacks run when the simulation resumes, before anything else then.
            event.callbacks = callbacks[done:]
            self.env.schedule(event, URGENT - 1)
            raise
        if not event.ok and not event.defused:
            value = event.value
            exc = type(value)(*value.args)
            exc.__cause__ = value
            raise exc


class EventQueue:
    """All events of one run, a :mod:`~agentsim.engine.minheap` keyed by ``(t, seq)``, and the current time.

    ``now`` is the time of the event being processed (set by :func:`run_until` and :meth:`step` as each event
    is popped). Components hold the queue itself, so the hot path schedules and reads the time without touching
    the (interpreted) simpy environment."""

    __slots__ = ("_ids", "_next_id", "heap", "now")

    def __init__(self, now: float = 0.0) -> None:
        self.heap: list[Keyed] = []
        self.now = now
        self._ids: Iterator[int] = count()
        # Bound once: ``next(self._ids)`` compiles to a lookup of ``next`` in builtins at every call.
        self._next_id: Callable[[], int] = self._ids.__next__

    def __len__(self) -> int:
        return len(self.heap)

    def pop(self) -> Event:
        """Remove and return the earliest event (the clock is not moved)."""
        return cast(Event, pop(self.heap))

    def post(self, ev: Event, delay: float) -> None:
        """Queue ``ev`` (NORMAL priority) to fire ``delay`` seconds after :attr:`now`, after everything already
        due then."""
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        ev.t = self.now + delay
        ev.seq = self._next_id()
        push(self.heap, ev)

    def post_priority(self, ev: Event, delay: float, priority: int) -> None:
        """:meth:`post` with a simpy priority (``URGENT`` = 0 goes before ``NORMAL`` = 1 at equal times)."""
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        ev.t = self.now + delay
        ev.seq = self._next_id() + (priority - NORMAL) * PRIORITY_SHIFT
        push(self.heap, ev)

    def schedule(self, delay: float, fn: Callable[..., None], args: tuple[Any, ...] = ()) -> Wakeup:
        """Run ``fn(*args)`` ``delay`` seconds after :attr:`now`."""
        ev = Wakeup(0.0, 0, fn, args)
        self.post(ev, delay)
        return ev

    def later(self, delay: float, fn: Callable[..., None], *args: Any) -> Wakeup:
        """:meth:`schedule` with the arguments written out (``later(2.0, f, x)``)."""
        return self.schedule(delay, fn, args)

    def peek(self) -> float:
        """Time of the next event, or infinity when none is left."""
        return self.heap[0].t if self.heap else float("inf")

    def step(self) -> None:
        """Process the next event (the queue must not be empty)."""
        ev = self.pop()
        self.now = ev.t
        ev.fire()

    def clear(self) -> None:
        """Drop every pending event (the end of a run): they hold tasks, calls and replicas in reference cycles
        that reference counting then frees at once."""
        self.heap.clear()


def run_until(q: EventQueue, stop: Event | None) -> None:
    """Process events in order until ``stop`` is popped (the clock then reads its time), or until none is left
    when ``stop`` is None."""
    heap = q.heap
    while heap:
        ev = cast(Event, pop(heap))
        q.now = ev.t
        if ev is stop:
            return
        ev.fire()
