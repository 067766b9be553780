"""Generation: synthetic traces from profiles, exactly the tasks a simulation with the same seed would start.

:func:`generate_tasks` draws tasks from a profile's :class:`~agentsim.workload.profiles.TaskFactory` and start
times from an open arrival process, on the simulator's own named random streams (``tasks/<workload>`` and
``arrivals/<workload>``), so a generated trace replays the same workload a profile-driven run would.
:func:`generate_trace` writes the same rows straight into a :class:`~agentsim.traces.io.TraceWriter` without
intermediate task objects; a :class:`~agentsim.spec.FixedProfile` (single-call tasks) is generated column-wise,
drawing exactly what the task factory draws.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from agentsim.rng import Streams
from agentsim.spec import AgentProfile, FixedProfile, GammaArrivals, Poisson
from agentsim.traces.io import TraceWriter
from agentsim.traces.schema import TraceError, TraceTask, trace_task
from agentsim.traces.tables import single_call_table
from agentsim.workload.arrivals import OpenArrivals
from agentsim.workload.distributions import BLOCK, sample
from agentsim.workload.profiles import TaskFactory


def generate_tasks(
    profile: AgentProfile | FixedProfile,
    n_tasks: int,
    *,
    arrivals: Poisson | GammaArrivals,
    seed: int = 0,
    workload: str = "default",
) -> Iterator[TraceTask]:
    """``n_tasks`` synthetic tasks of ``profile`` starting at the times of ``arrivals``.

    Randomness comes from ``rng.Streams(seed)``, streams ``tasks/<workload>`` (the :class:`TaskFactory`) and
    ``arrivals/<workload>`` (an :class:`~agentsim.workload.arrivals.OpenArrivals` process, the one behind
    ``arrival_array``), the names the simulator uses: a generated trace holds exactly the tasks a simulation
    of that workload with that seed would start.
    """
    streams = Streams(seed)
    factory = TaskFactory(profile, workload, streams.get(f"tasks/{workload}"))
    times = OpenArrivals(arrivals, streams.get(f"arrivals/{workload}"))
    call_id = 0
    for task_id in range(n_tasks):
        t = trace_task(factory.next(), task_id, times.next(), call_id)
        call_id += len(t.call_ids)
        yield t


def generate_trace(
    path: str | os.PathLike[str],
    profile: AgentProfile | FixedProfile,
    n_tasks: int,
    *,
    arrivals: Poisson | GammaArrivals,
    seed: int = 0,
    workload: str = "default",
    source: str = "",
    overwrite: bool = False,
) -> int:
    """Write the tasks of :func:`generate_tasks` to ``path`` (the same rows, built without intermediate
    objects); returns the number of calls."""
    if n_tasks < 1:
        raise TraceError(f"the number of tasks must be >= 1, got {n_tasks}")
    streams = Streams(seed)
    src = source or f"generated:{workload}:seed={seed}"
    times = OpenArrivals(arrivals, streams.get(f"arrivals/{workload}"))
    with TraceWriter(path, source=src, overwrite=overwrite) as w:
        if isinstance(profile, FixedProfile):
            _generate_fixed(w, profile, n_tasks, streams.get(f"tasks/{workload}"), times, workload)
            return n_tasks
        factory = TaskFactory(profile, workload, streams.get(f"tasks/{workload}"))
        call_id = 0
        for task_id in range(n_tasks):
            call_id = w.add_template(factory.next(), task_id, times.next(), call_id)
    return call_id


def _generate_fixed(
    w: TraceWriter, profile: FixedProfile, n_tasks: int, rng: np.random.Generator, times: OpenArrivals, workload: str
) -> None:
    """Single-call tasks of a :class:`FixedProfile`, column-wise.

    Draws exactly what :class:`TaskFactory` draws from the same generator (its two
    :class:`~agentsim.workload.distributions.IntSampler` refill ``BLOCK`` prompt draws, then ``BLOCK`` output
    draws, every ``BLOCK`` tasks; values rounded half-to-even and raised to at least 1), so the rows equal
    those of :func:`generate_tasks`; the tests check it.
    """
    done = 0
    while done < n_tasks:
        m = min(BLOCK, n_tasks - done)
        prompt = np.maximum(np.rint(sample(profile.prompt_tokens, rng, BLOCK)), 1).astype(np.int64)[:m]
        output = np.maximum(np.rint(sample(profile.output_tokens, rng, BLOCK)), 1).astype(np.int64)[:m]
        start = np.fromiter((times.next() for _ in range(m)), np.float64, m)
        ids = np.arange(done, done + m, dtype=np.int64)
        w.write_table(single_call_table(ids, ids, start, prompt, output, workload))
        done += m
