"""The simulation clock: simpy's event queue, used through one cheap primitive.

``later(env, delay, fn, *args)`` runs ``fn(*args)`` after ``delay`` simulated seconds. It puts a minimal event
object on simpy's queue with ``Environment.schedule`` (the documented scheduling entry point), so ordering is
simpy's total order ``(time, priority, insertion id)``: equal-time events run first-in first-out and a handler
is never run inline "because the delay is 0". Compared with ``env.timeout(delay).callbacks.append(...)`` it
skips the generic :class:`simpy.events.Timeout` set-up and a closure per event, which matters at millions of
events per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simpy.events import NORMAL


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


def later(env: Any, delay: float, fn: Callable[..., None], *args: Any) -> Wakeup:
    """Schedule ``fn(*args)`` at ``env.now + delay`` (``delay >= 0``)."""
    if delay < 0:
        raise ValueError(f"negative delay {delay}")
    ev = Wakeup(fn, args)
    env.schedule(ev, NORMAL, delay)
    return ev
