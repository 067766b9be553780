"""Each task's sums over its calls, from a run's call file read beside its task file, holding only open tasks.

A task row carries sums over its calls (how many, their tokens, busy seconds, dollars and joules). Kept for
every task id, those sums are seven floats per task: half a gigabyte for a ten-million-call replay of one-call
tasks. But the engine writes rows in the order things happen: a call's row when it ends (finished, rejected, or
still running at the horizon, at the end), a task's row when it ends (all its calls have ended by then), and
the tasks still running at the horizon last; each task row carries the time it was recorded (``recorded_s``).
So the task file can be finished in its own order while the call file is read alongside it, just far enough:
before a batch of task rows recorded by time ``T``, every call row up to the first call that finished after
``T`` (:meth:`StreamedTaskSums.upto`). The sums held are those of
tasks whose calls have been read and whose row has not: the tasks in flight, not the tasks done.

Each sum adds a task's call rows in row order starting from 0.0 (``np.add.at`` into the held sums, in row
order), as :class:`agentsim.engine.records.TaskSums` does over the whole table: the same additions, so the same
bits. That the engine wrote in that order is checked as the files are read: the call file's end times must not
go back, a call row of a task whose row was finished in the batch before is refused, and so is any call row
left unsummed at the end (:meth:`StreamedTaskSums.finish`): an engine fault, never sums dropped in silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Taken:
    """The sums of one batch of task rows, taken out of :class:`StreamedTaskSums` (lookups by those ids)."""

    def __init__(self, task_ids: np.ndarray, count: np.ndarray, sums: dict[str, np.ndarray]) -> None:
        self.task_ids, self.count, self.sums = task_ids, count, sums

    def _check(self, task_ids: np.ndarray) -> None:
        if not np.array_equal(np.asarray(task_ids, dtype=np.int64), self.task_ids):
            raise ValueError("the sums of other task ids")

    def of(self, name: str, task_ids: np.ndarray) -> np.ndarray:
        """Sum ``name`` of these tasks (0 for a task without calls)."""
        self._check(task_ids)
        return self.sums[name]

    def counts(self, task_ids: np.ndarray) -> np.ndarray:
        """How many call rows each of these tasks has."""
        self._check(task_ids)
        return self.count


class StreamedTaskSums:
    """Per-task sums of ``prompt_tokens``, ``cached_tokens``, ``output_tokens``, the call columns ``extra`` and
    ``busy_s + prefill_busy_s`` over a call table given as record batches in row order (with ``task_id``,
    ``issue_s``, ``done_s`` and ``status``), for task rows taken in their own order (module docstring)."""

    def __init__(self, calls: Iterable[pa.RecordBatch], extra: tuple[str, ...] = ()) -> None:
        self.names = ("prompt_tokens", "cached_tokens", "output_tokens", *extra)
        self._calls: Iterator[pa.RecordBatch] = iter(calls)
        self._batch: pa.RecordBatch | None = None  # read, not yet summed from row self._at on
        self._at = 0
        self._last_done = -np.inf
        self._exhausted = False
        self._finished = np.empty(0, dtype=np.int64)  # ids taken, while their calls may still be read (see take)
        self.ids = np.empty(0, dtype=np.int64)  # held task ids, ascending
        self.count = np.empty(0, dtype=np.int64)
        self.sums = {name: np.empty(0) for name in (*self.names, "busy_s")}

    @property
    def held(self) -> int:
        """How many tasks' sums are held."""
        return int(self.ids.size)

    def upto(self, t: float) -> None:
        """Sum the call rows up to the first recorded after ``t`` (all of them for ``t = inf``): a finished call
        is recorded at its ``done_s``, a rejected one when it was sent (its ``issue_s``), one still running at the
        horizon at the end."""
        while not self._exhausted:
            if self._batch is None:
                try:
                    self._batch, self._at = next(self._calls), 0
                except StopIteration:
                    self._exhausted = True
                    return
            b = self._batch.slice(self._at)
            done = np.asarray(b.column("done_s").to_numpy(zero_copy_only=False), dtype=float)
            rejected = np.asarray(pc.equal(b.column("status"), "rejected").to_numpy(zero_copy_only=False), dtype=bool)
            when = np.where(rejected, np.asarray(b.column("issue_s").to_numpy(), dtype=float), done)
            after = np.flatnonzero(when > t)  # NaN (still running at the horizon: the end) is never after
            cut = int(after[0]) if after.size else when.size
            self._add(b.slice(0, cut), when[:cut])
            if after.size:
                self._at += cut
                return
            self._batch = None

    def _add(self, rows: pa.RecordBatch, when: np.ndarray) -> None:
        if not rows.num_rows:
            return
        finished = when[~np.isnan(when)]  # when each was recorded: never going back
        if finished.size and (finished[0] < self._last_done or bool((np.diff(finished) < 0).any())):
            raise RuntimeError("call rows out of time order: the task table cannot be finished alongside them")
        if finished.size:
            self._last_done = float(finished[-1])
        of_call = np.asarray(rows.column("task_id").to_numpy(), dtype=np.int64)
        if of_call.min() < 0:
            raise ValueError("task ids must be >= 0")
        ordered = np.sort(of_call)
        distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
        if _among(distinct, self._finished).any():
            raise RuntimeError("a call row after its task's row: the task table cannot be finished alongside it")
        new = distinct[~_among(distinct, self.ids)]
        if new.size:  # new tasks start at 0, in the ascending order of ids
            ids = np.concatenate([self.ids, new])
            order = np.argsort(ids, kind="stable")
            self.ids = ids[order]
            self.count = np.concatenate([self.count, np.zeros(new.size, dtype=np.int64)])[order]
            self.sums = {k: np.concatenate([v, np.zeros(new.size)])[order] for k, v in self.sums.items()}
        at = np.searchsorted(self.ids, of_call)
        self.count += np.bincount(at, minlength=self.ids.size)  # integers: exact in any order
        for name in self.names:
            # in row order, as TaskSums; float64 sums of token counts are exact below 2**53 tokens per task
            np.add.at(self.sums[name], at, np.asarray(rows.column(name).to_numpy(), dtype=np.float64))
        busy = np.array(rows.column("busy_s").to_numpy(), dtype=np.float64)  # a copy: added to in place
        busy += rows.column("prefill_busy_s").to_numpy()
        np.add.at(self.sums["busy_s"], at, busy)

    def take(self, task_ids: np.ndarray, ended_by: float) -> Taken:
        """The sums of the tasks ``task_ids`` (rows that ended by ``ended_by``; ``inf`` for tasks still running
        at the horizon), summing the call rows they need first and letting go of them after."""
        self.upto(ended_by)
        ids = np.asarray(task_ids, dtype=np.int64)
        at = np.searchsorted(self.ids, ids)
        found = _among(ids, self.ids)  # a task without calls has none held
        rows = at[found]
        count = np.zeros(ids.size, dtype=np.int64)
        count[found] = self.count[rows]
        sums = {}
        for name, v in self.sums.items():
            s = np.zeros(ids.size)
            s[found] = v[rows]
            sums[name] = s
        keep = np.ones(self.ids.size, dtype=bool)
        keep[rows] = False
        self.ids, self.count = self.ids[keep], self.count[keep]
        self.sums = {k: v[keep] for k, v in self.sums.items()}
        # The ids just taken whose calls might still come (a call ending at the same time as its task is read
        # with it; a later one would be an engine fault): kept until the calls read pass their end time.
        self._finished = np.sort(ids)
        return Taken(ids, count, sums)


    def finish(self) -> None:
        """After the last task row: every call row must have been summed into a task taken. A call row left (of a
        task whose row came before it, or of no task in the table) is an engine fault: refused, not dropped."""
        self.upto(float("inf"))
        if self.held:
            raise RuntimeError(
                f"{self.held} task id(s) with call rows but no task row after them (first: {int(self.ids[0])}): "
                "the task table cannot be finished alongside the call table"
            )


def _among(values: np.ndarray, ascending: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the ascending array ``ascending`` (a sorted search: no hashing)."""
    if not ascending.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(ascending, values), ascending.size - 1)
    found: np.ndarray = ascending[at] == values
    return found
