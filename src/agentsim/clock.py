"""The simulation clock: simpy's event queue, driven by a compiled copy of simpy's own loop.

``later(env, delay, fn, *args)`` runs ``fn(*args)`` after ``delay`` simulated seconds. It puts a minimal event
object on simpy's queue exactly as ``Environment.schedule`` does, so ordering is simpy's total order
``(time, priority, insertion id)``: equal-time events run first-in first-out and a handler is never run inline
"because the delay is 0". Compared with ``env.timeout(delay).callbacks.append(...)`` it skips the generic
:class:`simpy.events.Timeout` set-up and a closure per event, which matters at millions of events per run.

:func:`run` is ``Environment.run(until=...)``: the same heap, the same order, the same failure semantics, with
simpy's step loop in this (mypyc-compiled, see ``setup.py``) module instead of interpreted Python, and a
direct call for the engine's bare events. Processes, timeouts and every other simpy event keep working: they
are stepped exactly as simpy steps them.

Both read simpy's queue attributes (``_queue``, ``_now``, ``_eid``), stable since simpy 3; a test runs the
same scenario through :func:`run` and through ``Environment.run`` and requires identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

from simpy.events import NORMAL, URGENT


class Wakeup:
    """A bare simpy event that calls ``fn(*args)`` when processed."""

    __slots__ = ("_ok", "_value", "args", "callbacks", "fn")

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.callbacks: list[Callable[[Wakeup], None]] | None = [_dispatch]
        self._ok = True  # simpy checks these after running the callbacks
        self._value = None


def _dispatch(ev: Wakeup) -> None:
    ev.fn(*ev.args)


def _noop() -> None:
    pass


def later(env: Any, delay: float, fn: Callable[..., None], *args: Any) -> Wakeup:
    """Schedule ``fn(*args)`` at ``env.now + delay`` (``delay >= 0``)."""
    if delay < 0:
        raise ValueError(f"negative delay {delay}")
    ev = Wakeup(fn, args)
    # The body of simpy's Environment.schedule(ev, NORMAL, delay).
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), ev))
    return ev


def run(env: Any, until: float) -> None:
    """Process events until simulated time ``until``, as ``env.run(until=until)`` does.

    Like simpy, the stop is an URGENT event at ``until``: events due before it run, NORMAL events due exactly at
    ``until`` do not.
    """
    at = float(until)
    if at <= env.now:
        raise ValueError(f"until ({at}) must be greater than the current simulation time")
    stop = Wakeup(_noop, ())
    env.schedule(stop, URGENT, at - env.now)
    queue: list[tuple[float, int, int, Any]] = env._queue
    while queue:
        now, _, _, event = heappop(queue)
        env._now = now
        if event is stop:
            return
        if isinstance(event, Wakeup):
            event.callbacks = None
            event.fn(*event.args)
            continue
        # Any other simpy event: Environment.step's body.
        callbacks = event.callbacks
        event.callbacks = None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
    raise RuntimeError(f"no scheduled events left but the run was to continue until {at}")


def discard_pending(env: Any) -> None:
    """Drop every event still scheduled (the end of a run). The pending callbacks hold tasks, calls and
    replicas in reference cycles through the environment; emptying simpy's queue (``Environment._queue``, its
    heap of scheduled events) lets reference counting free them at once instead of the cyclic collector."""
    env._queue.clear()
