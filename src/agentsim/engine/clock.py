"""The simulation clock: simpy's environment, plus a compiled queue and loop for the engine's bare events.

``later(env, delay, fn, *args)`` runs ``fn(*args)`` after ``delay`` simulated seconds. The engine and the agents
schedule millions of these; simpy's own queue is a heap of ``(time, priority, id, event)`` tuples whose
comparisons, with thousands of agents waiting on tools, cost about a fifth of a run. So these events go to
:class:`EventQueue`, a binary heap over plain float and int arrays in this (mypyc-compiled, see ``setup.py``)
module, while every other simpy event (processes, timeouts) stays on simpy's queue.

:func:`run` merges the two queues in simpy's total order ``(time, priority, insertion id)``: the ids come from
the environment's own counter and bare events have simpy's NORMAL priority, so the order of events is exactly
the order simpy would give them on one queue. Equal-time events run first-in first-out, and a handler is never
run inline "because the delay is 0". Like ``Environment.run(until=...)``, the stop is an URGENT event at
``until``: events due before it run, NORMAL events due exactly at ``until`` wait for the next :func:`run`.

The environment's ``_now``, ``_queue`` and ``_eid`` (stable since simpy 3) are read and set here, as simpy's
``Environment.step`` and ``schedule`` do; simpy processes and timeouts are stepped exactly as simpy steps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from heapq import heappop
from itertools import count
from typing import Any, Final, cast

from simpy.events import NORMAL, URGENT

from agentsim.engine.minheap import Keyed, pop, push

_ATTR: Final = "_agentsim_events"  # where an environment keeps its EventQueue


class Event(Keyed):
    """A bare event: :meth:`fire` runs at time ``t``; ``seq`` is its insertion id (simpy's tie-breaker).

    The hot events (a replica's step timer, an agent's next call, a task's start) are compiled subclasses
    whose :meth:`fire` is a direct native call with typed fields, rather than a :class:`Wakeup`'s bound method
    and argument tuple called through Python's generic calling convention."""

    __slots__ = ()

    def fire(self) -> None:
        raise NotImplementedError


class Wakeup(Event):
    """A bare event that calls ``fn(*args)``."""

    __slots__ = ("args", "fn")

    def __init__(self, t: float, seq: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        super().__init__(t, seq)
        self.fn = fn
        self.args = args

    def fire(self) -> None:
        self.fn(*self.args)


class EventQueue:
    """The bare events, a :mod:`~agentsim.engine.minheap` keyed by ``(t, insertion id)``: the order ``heapq`` gives
    ``(t, eid)`` tuples, with the keys read from the compiled events' fields instead of compared as tuples.

    It also carries what :meth:`schedule` needs from the environment, so the hot path reads no attribute of
    the (interpreted) ``simpy.Environment``: ``now``, kept equal to ``env.now`` by :func:`run`, and the
    environment's insertion-id counter itself (``env._eid``), so ids stay in one sequence with simpy's.
    """

    __slots__ = ("_ids", "_next_id", "heap", "now")

    def __init__(self, env: Any = None) -> None:
        self.heap: list[Keyed] = []
        self.now = 0.0 if env is None else float(env._now)
        self._ids: Iterator[int] = count() if env is None else env._eid
        # Bound once: ``next(self._ids)`` compiles to a lookup of ``next`` in builtins at every call.
        self._next_id: Callable[[], int] = self._ids.__next__

    def __len__(self) -> int:
        return len(self.heap)

    def pop(self) -> Event:
        """Remove and return the earliest event."""
        return cast(Event, pop(self.heap))

    def post(self, ev: Event, delay: float) -> None:
        """Queue ``ev`` to fire ``delay`` seconds after :attr:`now`, after everything already due then."""
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        ev.t = self.now + delay
        ev.seq = self._next_id()
        push(self.heap, ev)

    def schedule(self, delay: float, fn: Callable[..., None], args: tuple[Any, ...]) -> Wakeup:
        """Run ``fn(*args)`` ``delay`` seconds after :attr:`now` (the hot path: components hold their queue)."""
        ev = Wakeup(0.0, 0, fn, args)
        self.post(ev, delay)
        return ev

    def clear(self) -> None:
        self.heap.clear()


def events_of(env: Any) -> EventQueue:
    """The bare-event queue of ``env`` (made on first use)."""
    q = env.__dict__.get(_ATTR)
    if q is None:
        q = EventQueue(env)
        setattr(env, _ATTR, q)
    assert isinstance(q, EventQueue)
    return q


def later(env: Any, delay: float, fn: Callable[..., None], *args: Any) -> Wakeup:
    """Schedule ``fn(*args)`` at ``env.now + delay`` (``delay >= 0``)."""
    return schedule(env, delay, fn, args)


def schedule(env: Any, delay: float, fn: Callable[..., None], args: tuple[Any, ...]) -> Wakeup:
    """:func:`later` with the arguments as a tuple: the hot callers use this form, because a ``*args`` call
    cannot be compiled into a direct call and goes through Python's generic calling convention."""
    q = events_of(env)
    q.now = env._now  # in case simpy's own loop moved the clock (hot callers use q.schedule inside run)
    return q.schedule(delay, fn, args)


def run(env: Any, until: float | None = None) -> None:
    """Process events until simulated time ``until`` (as ``env.run(until=until)``), or until none are left when
    ``until`` is None."""
    stop: Any = None
    if until is not None:
        at = float(until)
        if at <= env.now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = env.event()
        stop._ok = True
        stop._value = None
        env.schedule(stop, URGENT, at - env.now)
    ours = events_of(env)
    ours.now = env._now
    theirs: list[tuple[float, int, int, Any]] = env._queue
    heap = ours.heap
    while True:
        if heap:
            first = heap[0]
            t = first.t
            if not theirs:
                mine = True
            else:
                head = theirs[0]
                ht = head[0]
                # (t, NORMAL, eid) < (ht, priority, eid'): simpy's order on one queue.
                mine = t < ht or (t == ht and (head[1] > NORMAL or (head[1] == NORMAL and first.seq < head[2])))
            if mine:
                ev = ours.pop()
                ours.now = t
                env._now = t
                ev.fire()
                continue
        elif not theirs:
            return  # nothing left (with a horizon this cannot happen: the stop event is still queued)
        # A simpy event: the body of Environment.step.
        t_event, _, _, event = heappop(theirs)
        ours.now = t_event
        env._now = t_event
        if event is stop:
            return
        callbacks = event.callbacks
        event.callbacks = None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


def discard_pending(env: Any) -> None:
    """Drop every event still scheduled (the end of a run). The pending callbacks hold tasks, calls and
    replicas in reference cycles through the environment; emptying both queues lets reference counting free
    them at once instead of the cyclic collector."""
    env._queue.clear()
    events_of(env).clear()
