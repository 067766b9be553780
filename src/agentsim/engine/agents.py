"""Agents: clock callbacks that walk each task's DAG of calls.

A task starts (an open-loop arrival, or a closed-loop agent ready for its next job); every call whose
dependencies are done waits its gap (tool time) and is then sent to the cluster. When the cluster reports a
call done, its dependents' counters drop; when the last call is done the task is done and, in a closed loop,
its agent thinks and starts the next task. Latency therefore feeds back into the workload: a slower cluster
delays every later step of every agent.

Context window. A call whose prompt + output passes the window of the model that serves it
(``Stream.max_context_tokens``) is rejected when sent, as a server answers HTTP 400: recorded with status
``rejected``, never routed, no token processed. Its task fails there: its later calls are never sent (those
already in flight finish and are recorded), and a closed-loop agent moves on to its next task after its think
time. The cluster refuses any call past the window that still reaches it (a bug, never a simulation).

Everything is callbacks on the simulation clock (:class:`Start` and :class:`Send`, compiled
:class:`~agentsim.engine.events.Event` s in simpy's order; no generator process per call), and a handler is
never run inline "because the delay is 0": it goes through the clock, so equal-time events keep their FIFO order. (A
task's first calls without a gap are sent from the task's own start event: sending only queues them at a
replica, so no order is lost.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from agentsim.engine.events import Event, EventQueue
from agentsim.engine.records import Recorder
from agentsim.serving.call import Call, CallListener
from agentsim.serving.cluster import Cluster
from agentsim.serving.tools import ToolPool
from agentsim.workload.taskgraph import NO_WINDOW, ROOT, TaskTemplate


@dataclass(slots=True)
class Stream:
    """One workload as the agents see it: where its tasks and arrivals come from."""

    index: int
    label: str
    next_task: Callable[[], TaskTemplate]
    arrivals: Iterator[float] | None  # open loop: absolute arrival times; None for closed loop
    agent_starts: list[float]  # closed loop: start time of each agent
    think: Callable[[], float]  # closed loop: think time before an agent's next task
    max_tasks: int | None
    max_context_tokens: int = NO_WINDOW  # the serving model's context window: calls past it are rejected
    model: int = 0  # the model its calls go to (resolve.py's index), unless a call's template names another


_CHAIN: Final[list[int]] = []  # pending counters and children of a chain task: none needed (shared, never mutated)
_CHAIN_CHILDREN: Final[list[list[int]]] = []


class TaskRun:
    """A task in flight: its template, its calls so far and its dependency counters."""

    __slots__ = (
        "affinity",
        "agent",
        "calls",
        "chain",
        "children",
        "done_s",
        "failed",
        "id",
        "pending",
        "remaining",
        "start_s",
        "stream",
        "template",
        "tool_busy_s",
        "tool_s",
        "tool_wait_s",
    )

    def __init__(self, id: int, stream: Stream, template: TaskTemplate, start_s: float, agent: int | None):
        self.id = id
        self.stream = stream
        self.template = template
        self.start_s = start_s
        self.done_s: float | None = None
        self.failed = False  # a call was rejected (past the context window): nothing more is sent
        self.agent = agent
        self.affinity: Any = None  # session-affinity: the replica kept for this task, per replica set
        self.tool_s = 0.0  # the gaps (tool time) before the calls sent so far
        self.tool_busy_s = 0.0  # worker-seconds this task used on the tool pool
        self.tool_wait_s = 0.0  # time its tool calls waited for a free worker
        n = len(template.calls)
        self.calls: list[Call | None] = [None] * n
        self.remaining = n
        # A chain (each call after the first depends on exactly the one before: most agent tasks, and every
        # one-call task) needs no dependency bookkeeping: call i's only dependent is call i + 1.
        calls = template.calls
        chain = not calls[0].deps
        i = 1
        while chain and i < n:
            deps = calls[i].deps
            chain = len(deps) == 1 and deps[0] == i - 1
            i += 1
        self.chain = chain
        if chain:
            self.pending = _CHAIN
            self.children: list[list[int]] = _CHAIN_CHILDREN
            return
        self.pending = [len(c.deps) for c in calls]
        self.children = [[] for _ in range(n)]
        for i, c in enumerate(calls):
            for d in c.deps:
                self.children[d].append(i)


class Send(Event):
    """Call ``index`` of ``task`` is due (its dependencies are done and its gap is over)."""

    __slots__ = ("agents", "index", "task")

    def __init__(self, agents: Agents, task: TaskRun, index: int) -> None:
        super().__init__(0.0, 0)
        self.agents = agents
        self.task = task
        self.index = index

    def fire(self) -> None:
        self.agents._send(self.task, self.index)


class Start(Event):
    """A task of ``stream`` starts: an open-loop arrival (``agent`` None; the next arrival is then scheduled),
    or a closed-loop agent ready for its next task."""

    __slots__ = ("agent", "agents", "stream")

    def __init__(self, agents: Agents, stream: Stream, agent: int | None) -> None:
        super().__init__(0.0, 0)
        self.agents = agents
        self.stream = stream
        self.agent = agent

    def fire(self) -> None:
        if self.agent is None:
            self.agents._arrive(self)
        else:
            self.agents._start_task(self.stream, self.agent)


class Agents(CallListener):
    """Drives every workload stream against the cluster until the horizon. The cluster's replicas tell it when
    calls progress (a :class:`~agentsim.serving.call.CallListener`); it records finished calls and tasks with
    ``recorder``."""

    def __init__(
        self,
        clock: EventQueue,
        streams: list[Stream],
        horizon_s: float,
        recorder: Recorder,
        tools: ToolPool | None = None,
    ) -> None:
        self.clock = clock
        self.tools = tools
        self.streams = streams
        self.horizon_s = horizon_s
        self.cluster: Cluster | None = None
        self.recorder = recorder
        self.active: dict[TaskRun, None] = {}  # tasks in flight, in start order
        self._next_task = 0
        self._next_call = 0
        self._started = [0] * len(streams)
        self.park_tools = False  # a pool moves an agent's KV out while its tool runs (kv_offload on_tool_wait)

    # ------------------------------------------------------------------ start
    def start(self, cluster: Cluster) -> None:
        """Schedule every stream's first arrivals or agents."""
        self.cluster = cluster
        for s in self.streams:
            if s.arrivals is not None:
                self._schedule_arrival(s)
            else:
                for agent, t in enumerate(s.agent_starts):
                    self.clock.post(Start(self, s, agent), t)

    def _schedule_arrival(self, s: Stream, ev: Start | None = None) -> None:
        """Post the next arrival of ``s``: ``ev``, the arrival that just fired, again (one event per stream
        rather than one per task), or a new event."""
        assert s.arrivals is not None
        t = next(s.arrivals, None)
        if t is None or t >= self.horizon_s:
            return
        self.clock.post(Start(self, s, None) if ev is None else ev, t - self.clock.now)

    def _arrive(self, ev: Start) -> None:
        self._start_task(ev.stream, None)
        self._schedule_arrival(ev.stream, ev)

    # ------------------------------------------------------------------ tasks
    def _start_task(self, s: Stream, agent: int | None) -> None:
        if s.max_tasks is not None and self._started[s.index] >= s.max_tasks:
            return
        self._started[s.index] += 1
        tid = self._next_task
        self._next_task += 1
        task = TaskRun(tid, s, s.next_task(), self.clock.now, agent)
        self.active[task] = None
        for i, c in enumerate(task.template.calls):
            if not c.deps:
                if c.gap_s > 0:
                    self.clock.post(Send(self, task, i), c.gap_s)
                else:
                    # Task starts run from the clock already (an arrival or an agent's wake-up), and sending
                    # only queues the call at a replica, so no ordering is lost by sending now.
                    self._send(task, i)

    def _send(self, task: TaskRun, i: int) -> None:
        if task.failed:
            return  # failed at a rejected call: its later calls are never sent (open-mode replay posts them all)
        tc = task.template.calls[i]
        parent = task.calls[tc.prefix_parent] if tc.prefix_parent != ROOT else None
        shared = task.template.shared_prefix_tokens
        call = Call(
            self._next_call,
            tc.prompt_tokens,
            tc.output_tokens,
            self.clock.now,
            owner=task,
            index=i,
            workload=task.stream.index,
            parent=parent,
            root_key=-(task.stream.index + 1) if shared > 0 else None,
            root_len=shared,
            blocks=tc.hash_ids,
            block_tokens=task.template.block_tokens,
            reasoning=tc.reasoning_tokens,
            stable=tc.stable_tokens,
            model=tc.model if tc.model >= 0 else task.stream.model,
        )
        self._next_call += 1
        if self.park_tools:
            calls = task.template.calls
            nxt = i + 1
            if nxt < len(calls) and calls[nxt].gap_is_tool and calls[nxt].gap_s > 0 and calls[nxt].deps == (i,):
                call.park = True
        task.calls[i] = call
        task.tool_s += tc.gap_s
        if tc.prompt_tokens + tc.output_tokens > task.stream.max_context_tokens:
            self._reject(task, call)
            return
        assert self.cluster is not None
        self.cluster.route(call)

    def _reject(self, task: TaskRun, call: Call) -> None:
        """The server rejects ``call``: it passes the context window. Its task fails (module docstring)."""
        self.recorder.on_call_done(call, task.id, task.template.calls[call.index].compacted, rejected=True)
        task.calls[call.index] = None  # recorded: not in flight
        task.failed = True
        self._settle_failed(task)
        if task.agent is not None:
            self.clock.post(Start(self, task.stream, task.agent), task.stream.think())

    def _settle_failed(self, task: TaskRun) -> None:
        """Record failed ``task`` and let it go once none of its calls is in flight."""
        if any(c is not None and c.done_s is None for c in task.calls):
            return
        del self.active[task]
        self.record_task(task)
        task.calls.clear()

    def record_task(self, task: TaskRun) -> None:
        """Record ``task``'s row (finished, failed, or in flight at the end of the run), now."""
        self.recorder.task(
            task_id=task.id,
            workload=task.stream.index,
            agent=task.agent,
            start_s=task.start_s,
            done_s=task.done_s,
            status="failed" if task.failed else "unfinished" if task.done_s is None else "finished",
            failure="context_window" if task.failed else None,
            calls_planned=len(task.template.calls),
            tool_s=task.tool_s,
            tool_busy_s=task.tool_busy_s,
            tool_wait_s=task.tool_wait_s,
            recorded_s=self.clock.now,
        )

    def record_unfinished(self) -> None:
        """At the horizon: record the calls and tasks still in flight (unset times stay null)."""
        for task in self.active:
            for c in task.calls:
                if c is not None and c.done_s is None:
                    self.recorder.on_call_done(c, task.id, task.template.calls[c.index].compacted)
            self.record_task(task)

    def release(self) -> None:
        """After the run (and after the unfinished tasks are recorded): drop the tasks still in flight, breaking
        each one's task <-> call cycle, so they are freed by reference counting."""
        for task in self.active:
            task.calls = []
        self.active.clear()

    def _due(self, task: TaskRun, j: int) -> None:
        """Call ``j`` of ``task`` has all its dependencies done: send it after its gap (on the tool pool, if
        the gap is a tool call and there is one)."""
        tc = task.template.calls[j]
        if tc.gap_is_tool and self.tools is not None and tc.gap_s > 0:
            self.tools.run(tc.gap_s, task, self._send, task, j)
        else:
            self.clock.post(Send(self, task, j), tc.gap_s)

    def on_first_token(self, call: Call, now: float) -> None:
        """The engine produced ``call``'s first token (nothing to do yet: streaming does not unblock steps)."""

    def on_done(self, call: Call, now: float) -> None:
        """The engine finished ``call``: release its dependents, finish the task when it was the last."""
        task: TaskRun = call.owner
        i = call.index
        self.recorder.on_call_done(call, task.id, task.template.calls[i].compacted)
        if task.failed:
            self._settle_failed(task)  # a call that was in flight when its task failed: it releases nothing
            return
        if task.chain:
            if i + 1 < len(task.template.calls):
                self._due(task, i + 1)
        else:
            pending = task.pending
            for j in task.children[i]:
                pending[j] -= 1
                if pending[j] == 0:
                    self._due(task, j)
        task.remaining -= 1
        if task.remaining == 0:
            task.done_s = now
            del self.active[task]
            self.record_task(task)
            task.calls.clear()  # break the task <-> call reference cycle so memory is freed by refcount
            if task.agent is not None:
                self.clock.post(Start(self, task.stream, task.agent), task.stream.think())
