"""The tool pool: CPU workers that run agents' tool calls.

Between two LLM calls an agent runs a tool (a shell command, a test suite, a web fetch). Without a tool pool
that time is a fixed gap; with one, a tool call needs one of ``workers`` workers for ``duration / speedup``
seconds and waits in a FIFO queue when all are busy, so tool time grows with load like any other service.
The pool counts busy worker-seconds (for cost and energy) and each tool call's wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from agentsim.engine.events import EventQueue


class ToolPool:
    """``workers`` identical servers with one FIFO queue (an M/G/c station)."""

    def __init__(self, clock: EventQueue, workers: int, speedup: float) -> None:
        self.clock = clock
        self.workers = workers
        self.speedup = speedup
        self.busy = 0
        self.queue: deque[tuple[float, float, Any, Callable[..., None], tuple[Any, ...]]] = deque()
        self.busy_s = 0.0  # worker-seconds of finished tool calls
        self._started: dict[int, float] = {}  # running tool call id -> start time (for in-progress busy time)
        self._next_id = 0

    def run(self, duration: float, owner: Any, then: Callable[..., None], *args: Any) -> None:
        """Run a tool call of ``duration`` seconds (before speedup) for ``owner`` (a task, which accumulates
        ``tool_busy_s`` and ``tool_wait_s``), then call ``then(*args)``."""
        if self.busy < self.workers:
            self._start(duration, self.clock.now, owner, then, args)
        else:
            self.queue.append((duration, self.clock.now, owner, then, args))

    def _start(
        self, duration: float, asked: float, owner: Any, then: Callable[..., None], args: tuple[Any, ...]
    ) -> None:
        now = self.clock.now
        self.busy += 1
        service = duration / self.speedup
        owner.tool_wait_s += now - asked
        tid = self._next_id
        self._next_id += 1
        self._started[tid] = now
        self.clock.schedule(service, self._done, (tid, service, owner, then, args))

    def _done(self, tid: int, service: float, owner: Any, then: Callable[..., None], args: tuple[Any, ...]) -> None:
        del self._started[tid]
        self.busy -= 1
        self.busy_s += service
        owner.tool_busy_s += service
        if self.queue:
            duration, asked, nxt, fn, a = self.queue.popleft()
            self._start(duration, asked, nxt, fn, a)
        then(*args)

    def release(self) -> None:
        """After the run: drop the queued tool calls (and the tasks they hold)."""
        self.queue.clear()

    def progress(self, now: float) -> tuple[int, int, int, float, int, int]:
        """The time-series row of the pool, shaped like a replica's: (busy workers, queued tool calls, 0,
        busy worker-seconds including calls in progress, 0, 0)."""
        running = sum(now - t for t in self._started.values())
        return self.busy, len(self.queue), 0, self.busy_s + running, 0, 0
