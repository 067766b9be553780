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

from collections.abc import Callable
from heapq import heappop
from typing import Any

from simpy.events import NORMAL, URGENT

_ATTR = "_agentsim_events"  # where an environment keeps its EventQueue


class Wakeup:
    """A bare event: ``fn(*args)`` at time ``t``; ``eid`` is its insertion id (simpy's tie-breaker)."""

    __slots__ = ("args", "eid", "fn", "t")

    def __init__(self, t: float, eid: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.t = t
        self.eid = eid
        self.fn = fn
        self.args = args


class EventQueue:
    """A binary min-heap of :class:`Wakeup` events keyed by ``(t, eid)``: the order ``heapq`` gives
    ``(t, eid)`` tuples, with the keys read from the compiled events' fields instead of compared as tuples."""

    __slots__ = ("heap",)

    def __init__(self) -> None:
        self.heap: list[Wakeup] = []

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, ev: Wakeup) -> None:
        heap = self.heap
        heap.append(ev)
        t, eid = ev.t, ev.eid
        pos = len(heap) - 1
        while pos > 0:  # sift the new entry up towards the root
            parent = (pos - 1) >> 1
            p = heap[parent]
            if t < p.t or (t == p.t and eid < p.eid):
                heap[pos] = p
                pos = parent
            else:
                break
        heap[pos] = ev

    def pop(self) -> Wakeup:
        """Remove and return the earliest event."""
        heap = self.heap
        top = heap[0]
        ev = heap.pop()
        n = len(heap)
        if n == 0:
            return top
        t, eid = ev.t, ev.eid
        pos = 0
        while True:  # sift the former last entry down from the root
            child = 2 * pos + 1
            if child >= n:
                break
            c = heap[child]
            right = child + 1
            if right < n:
                r = heap[right]
                if r.t < c.t or (r.t == c.t and r.eid < c.eid):
                    child = right
                    c = r
            if c.t < t or (c.t == t and c.eid < eid):
                heap[pos] = c
                pos = child
            else:
                break
        heap[pos] = ev
        return top

    def clear(self) -> None:
        self.heap.clear()


def events_of(env: Any) -> EventQueue:
    """The bare-event queue of ``env`` (made on first use)."""
    q = env.__dict__.get(_ATTR)
    if q is None:
        q = EventQueue()
        setattr(env, _ATTR, q)
    assert isinstance(q, EventQueue)
    return q


def now(env: Any) -> float:
    """``env.now`` without the property call (simpy keeps the time in ``_now``): read on every event."""
    t: float = env._now
    return t


def later(env: Any, delay: float, fn: Callable[..., None], *args: Any) -> Wakeup:
    """Schedule ``fn(*args)`` at ``env.now + delay`` (``delay >= 0``)."""
    return schedule(env, delay, fn, args)


def schedule(env: Any, delay: float, fn: Callable[..., None], args: tuple[Any, ...]) -> Wakeup:
    """:func:`later` with the arguments as a tuple: the hot callers use this form, because a ``*args`` call
    cannot be compiled into a direct call and goes through Python's generic calling convention."""
    if delay < 0:
        raise ValueError(f"negative delay {delay}")
    ev = Wakeup(env._now + delay, next(env._eid), fn, args)
    events_of(env).push(ev)
    return ev


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
                mine = t < ht or (t == ht and (head[1] > NORMAL or (head[1] == NORMAL and first.eid < head[2])))
            if mine:
                ours.pop()
                env._now = t
                first.fn(*first.args)
                continue
        elif not theirs:
            return  # nothing left (with a horizon this cannot happen: the stop event is still queued)
        # A simpy event: the body of Environment.step.
        t_event, _, _, event = heappop(theirs)
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
