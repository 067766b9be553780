"""The compiled clock (its event queue against heapq, its loop against simpy's order), the row buffers across
Arrow chunks, and the compiled-module bookkeeping (``agentsim.build``)."""

from __future__ import annotations

import hashlib
import heapq
import importlib.machinery
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simpy
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.core import EmptySchedule
from simpy.events import NORMAL, URGENT

from agentsim import build
from agentsim.api import RunResult, run
from agentsim.engine import events, minheap
from agentsim.engine.clock import Clock
from agentsim.engine.records import CHUNK_ROWS, Rows, number_tasks
from helpers_validation import const, scenario


def parquet_bytes(t: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.25]) | st.floats(0, 10), st.booleans()),
                max_size=200))
def test_event_queue_pops_in_heapq_order(ops: list[tuple[float, bool]]) -> None:
    """Random pushes and pops (many equal times): the same order as heapq on ``(time, id)`` tuples. (The
    queue is :mod:`agentsim.engine.minheap`, which also orders the replicas' completions and the KV caches'
    evictions.)"""
    q = events.EventQueue()
    ref: list[tuple[float, int, events.Wakeup]] = []
    for eid, (t, pop) in enumerate(ops):
        ev = events.Wakeup(t, eid, print, (eid,))
        minheap.push(q.heap, ev)  # at its own (t, eid), as EventQueue.post would put it
        heapq.heappush(ref, (t, eid, ev))
        if pop:
            assert q.heap[0] is ref[0][2]
            assert q.pop() is heapq.heappop(ref)[2]
    while ref:
        assert q.pop() is heapq.heappop(ref)[2]
    assert len(q) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([NORMAL, URGENT]), st.booleans()),
                min_size=1, max_size=60))
def test_one_queue_orders_like_simpy(plan: list[tuple[float, int, bool]]) -> None:
    """The clock's one queue and simpy's own environment process the same schedule in the same order: compiled
    events and simpy events of both priorities, many at equal times, some scheduled from inside handlers."""

    def trace(env: Any, post_bare: Any) -> list[int]:
        seen: list[int] = []

        def handler(i: int, delay: float, priority: int, nested: bool) -> None:
            seen.append(i)
            if nested and i < 1000:  # a handler schedules more, at its own time or later
                schedule(1000 + i, delay, priority)

        def schedule(i: int, delay: float, priority: int) -> None:
            if priority == NORMAL and i % 2:
                post_bare(delay, lambda: handler(i, delay, priority, False))  # a compiled event where possible
            else:
                ev = env.event()
                ev._ok, ev._value = True, None  # a triggered event at any priority: no public way (tests only)
                ev.callbacks.append(lambda _e: handler(i, delay, priority, False))
                env.schedule(ev, priority, delay)

        for i, (delay, priority, nested) in enumerate(plan):
            ev = env.event()
            ev._ok, ev._value = True, None
            ev.callbacks.append(lambda _e, i=i, d=delay, p=priority, n=nested: handler(i, d, p, n))
            env.schedule(ev, priority, delay)
        env.run(until=5.0)
        return seen

    reference = simpy.Environment()
    clk = Clock()

    def on_simpy(delay: float, fn: Any) -> None:
        reference.timeout(delay).callbacks.append(lambda _e: fn())

    assert trace(clk, lambda d, fn: clk.events.later(d, fn)) == trace(reference, on_simpy)


def test_compiled_and_simpy_events_interleave_in_simpy_order() -> None:
    """Equal-time events run in the order they were scheduled, whichever kind they are; an URGENT simpy event at
    the same time goes first, as on simpy's queue."""
    env = Clock()
    q = env.events
    seen: list[str] = []
    q.later(1.0, seen.append, "w1")
    env.timeout(1.0).callbacks.append(lambda _e: seen.append("t1"))
    q.later(1.0, seen.append, "w2")
    env.timeout(1.0).callbacks.append(lambda _e: seen.append("t2"))

    def trigger() -> None:
        normal = env.event()
        normal.callbacks.append(lambda _e: seen.append("normal"))
        normal.succeed()  # NORMAL, after w0.5, which was scheduled earlier at the same time
        env.process(starts())  # a process starts with an URGENT initialisation event: before both

    def starts() -> Any:
        seen.append("urgent")
        yield env.timeout(0)

    q.later(0.5, trigger)
    q.later(0.5, seen.append, "w0.5")
    env.run(until=5.0)
    assert seen == ["urgent", "w0.5", "normal", "w1", "t1", "w2", "t2"]


def test_a_whole_run_is_reproducible() -> None:
    def once() -> RunResult:
        return run(scenario(
            profile="support-agent",
            perf={"kind": "linear", "alpha_s": 0.004, "beta_s_per_prefill_token": 2e-6,
                  "gamma_s_per_context_token": 1e-8},
            arrivals={"kind": "closed", "agents": 12, "think_s": const(0.5)},
            horizon_s=120.0, replicas=2, sample_interval_s=10.0,
            engine={"max_num_seqs": 8, "kv_capacity_tokens": 120_000},
        ))

    a, b = once(), once()
    assert a.calls.num_rows > 500
    for x, y in [(a.calls, b.calls), (a.tasks, b.tasks), (a.replicas, b.replicas)]:
        assert parquet_bytes(x) == parquet_bytes(y)


def test_run_stops_like_simpy_before_normal_events_at_the_horizon() -> None:
    seen: list[tuple[str, float]] = []
    env = Clock()
    env.events.later(1.0, lambda: seen.append(("wakeup", env.now)))
    env.events.later(2.0, lambda: seen.append(("at horizon", env.now)))  # NORMAL at `until`: not run

    def proc() -> Any:
        yield env.timeout(0.5)
        seen.append(("process", env.now))
        yield env.timeout(0.25)
        seen.append(("process", env.now))

    env.process(proc())
    env.run(until=2.0)
    assert seen == [("process", 0.5), ("process", 0.75), ("wakeup", 1.0)]
    assert env.now == 2.0
    env.run(until=3.0)  # resumable, like simpy's run
    assert seen[-1] == ("at horizon", 2.0)
    with pytest.raises(ValueError, match="greater than the current"):
        env.run(until=3.0)
    env.events.later(1.0, seen.append, ("last", 4.0))
    env.run()  # no horizon: until nothing is left
    assert seen[-1] == ("last", 4.0) and env.now == 4.0


def test_run_until_an_event_returns_its_value_like_simpy() -> None:
    """``run(until=event)`` and ``step``/``peek`` on the clock give what they give on simpy's own environment."""

    def script(env: Any, later: Any) -> list[Any]:
        def proc() -> Any:
            yield env.timeout(1.5)
            return "answer"

        p = env.process(proc())
        later(3.0)  # left for later
        out: list[Any] = [env.run(until=p), env.now]
        while env.peek() != float("inf"):
            out.append(env.peek())
            env.step()
        out.append(env.now)
        with pytest.raises(EmptySchedule):
            env.step()
        return out

    clk = Clock()
    ref = simpy.Environment()
    got = script(clk, lambda d: clk.events.later(d, lambda: None))
    assert got == script(ref, lambda d: ref.timeout(d))
    assert got[:2] == ["answer", 1.5] and got[-1] == 3.0


def test_run_raises_a_failed_event_like_simpy() -> None:
    env = Clock()
    ev = env.event()
    ev.fail(KeyError("boom"))
    with pytest.raises(KeyError, match="boom"):
        env.run(until=1.0)
    env = Clock()
    defused = env.event()
    defused.fail(KeyError("handled"))
    defused.defused = True  # a failure someone handled does not stop the simulation
    env.run(until=1.0)


def test_later_refuses_negative_delays_and_keeps_fifo_order() -> None:
    env = Clock()
    order: list[int] = []
    for i in range(5):
        env.events.later(0.0, order.append, i)
    env.run(until=1.0)
    assert order == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="negative delay"):
        env.events.later(-1e-9, order.append, 9)


def test_clear_empties_the_queue() -> None:
    env = Clock()
    env.events.later(1.0, lambda: None)
    env.timeout(2.0)
    env.events.clear()
    assert env.peek() == float("inf") and len(env.events) == 0


def test_no_private_simpy_attribute_is_used() -> None:
    """The clock extends simpy through its public interface only: no ``env._x`` / ``event._x`` in agentsim."""

    src = Path(__file__).resolve().parents[1] / "src" / "agentsim"
    offenders = []
    for f in src.rglob("*.py"):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"\b(env|event|ev|stop|until)\._(now|queue|eid|ok|value|defused|active_proc)\b", line):
                offenders.append(f"{f.name}:{n}: {line.strip()}")
    assert offenders == []


def test_rows_survive_chunking_with_nulls_and_order() -> None:
    schema = pa.schema([("i", pa.int64()), ("t_s", pa.float64()), ("name", pa.string()), ("x", pa.float64()),
                        ("y_s", pa.float64())])
    rows = Rows(schema, nullable=("t_s", "name"))
    n = CHUNK_ROWS * 2 + 17  # two full record batches and a partial one
    for i in range(n):
        # t_s: nulls (numpy would read them as NaN: they must stay null); x: NaN values (must stay NaN, not
        # null); y_s: no nulls at all (the fast path)
        rows.append((i, None if i % 7 == 0 else i * 0.5, "a" if i % 2 else None,
                     math.nan if i % 5 == 0 else 1.0, i * 0.25))
    assert len(rows) == n
    t = rows.table()
    assert t.num_rows == n and t.schema == schema
    assert t.column("i").num_chunks == 1  # combined: one contiguous chunk per column
    i = t.column("i").to_pylist()
    assert i == list(range(n))
    ts = t.column("t_s").to_pylist()
    assert ts[0] is None and ts[7] is None and ts[CHUNK_ROWS + 1] == (CHUNK_ROWS + 1) * 0.5
    assert t.column("t_s").null_count == len(range(0, n, 7))
    assert t.column("name").null_count == (n + 1) // 2
    x = t.column("x")
    assert x.null_count == 0 and sum(math.isnan(v) for v in x.to_pylist()) == len(range(0, n, 5))
    assert t.column("y_s").null_count == 0 and t.column("y_s").to_pylist() == [i * 0.25 for i in range(n)]
    assert Rows(schema).table().num_rows == 0
    with pytest.raises(ValueError, match="y_s is not nullable"):
        rows.append((0, 0.0, "a", 1.0, None))


def test_rows_keep_extreme_values_and_unicode_words() -> None:
    """Packing into binary records loses nothing: 64-bit extremes, -0.0, infinities, subnormals, and words in
    any script, numbered as they come or given up front."""
    schema = pa.schema([("i", pa.int64()), ("j", pa.int32()), ("x", pa.float64()), ("w", pa.string())])
    ints = [-(2**63), 2**63 - 1, 0, -1]
    int32s = [-(2**31), 2**31 - 1, 7, 0]
    floats = [-0.0, math.inf, -math.inf, 5e-324]
    words = ["zeta", "日本語", "zeta", "é"]
    rows = Rows(schema, words={"w": ["é"]})
    for row in zip(ints, int32s, floats, words, strict=True):
        rows.append(row)
    t = rows.table()
    assert t.column("i").to_pylist() == ints and t.column("j").to_pylist() == int32s
    x = t.column("x").to_pylist()
    assert x == floats and math.copysign(1.0, x[0]) == -1.0
    assert t.column("w").to_pylist() == words
    assert rows.words[3] == ["é", "zeta", "日本語"]  # given first, then in order of first sight
    with pytest.raises(struct.error):
        rows.append((2**63, 0, 0.0, "a"))  # out of int64 range: refused, not wrapped


def test_a_record_packed_in_two_parts_equals_one_appended_whole() -> None:
    """``Rows.split``: a writer may pack the columns before a given one, then the rest (the call table's
    hand-off columns are packed only in disaggregated runs); the rows are those ``append`` gives."""
    schema = pa.schema([("i", pa.int64()), ("t_s", pa.float64()), ("pool", pa.string()), ("x_s", pa.float64()),
                        ("n", pa.int32())])
    whole, split = Rows(schema, nullable=("t_s", "pool")), Rows(schema, nullable=("t_s", "pool"))
    head, tail, offset = split.split("pool")
    assert offset == 8 + 1 + 8  # i, then t_s with its validity byte
    for i in range(CHUNK_ROWS + 3):
        t = None if i % 3 == 0 else i * 0.5
        pool = "a" if i % 2 else None
        whole.append((i, t, pool, i * 0.25, i % 7))
        off = split.slot()
        head(split.buf, off, i, t is not None, t or 0.0)
        tail(split.buf, off + offset, pool is not None, 0 if pool is None else split.code(2, pool), i * 0.25, i % 7)
    assert split.table().equals(whole.table())


def test_per_task_sums_match_a_dictionary_of_sums() -> None:
    """``number_tasks`` + ``np.bincount``: each task's sum over its call rows (any order, ids with gaps, tasks
    without calls get 0), read back in the tasks' row order; a negative id is refused."""
    rng = np.random.default_rng(5)
    task_ids = rng.permutation(np.array([0, 3, 4, 9, 10, 11, 40]))
    call_task_ids = rng.choice(np.array([3, 4, 9, 11, 40]), size=500)
    values = rng.random(500)
    expected: dict[int, float] = {}
    for t, v in zip(call_task_ids.tolist(), values.tolist(), strict=True):
        expected[t] = expected.get(t, 0.0) + v  # row order, as the engine's loops added
    of_task, of_call, size = number_tasks(task_ids, call_task_ids)
    sums = np.bincount(of_call, weights=values, minlength=size)[of_task]
    assert sums.tolist() == [expected.get(t, 0.0) for t in task_ids.tolist()]  # exactly: same order of additions
    with pytest.raises(ValueError, match=">= 0"):
        number_tasks(np.array([0, -1]), np.array([0]))


def test_constant_columns_are_built_whole_and_equal_to_recorded_ones() -> None:
    """A column declared constant (the call table's hand-off columns when there is no prefill pool) is not
    buffered, and comes out as if every row had recorded the value: nulls for None, else the value."""
    schema = pa.schema([("i", pa.int64()), ("pool", pa.string()), ("x_s", pa.float64()), ("n", pa.int32())])
    n = CHUNK_ROWS + 5
    recorded, fixed = Rows(schema, nullable=("pool",)), Rows(schema, {"pool": None, "x_s": 0.0})
    for i in range(n):
        recorded.append((i, None, 0.0, i % 3))
        fixed.append((i, "ignored", 1.5, i % 3))
    assert fixed.record_bytes == 8 + 4  # i and n only: the constant columns are not in the record
    assert fixed.table().equals(recorded.table())
    with pytest.raises(ValueError, match="not in the schema"):
        Rows(schema, {"nope": None})
    with pytest.raises(ValueError, match="not in the schema"):
        Rows(schema, nullable=("nope",))


def test_manifest_says_which_modules_ran_compiled() -> None:
    r = run(scenario(profile="chat", perf={"kind": "linear", "alpha_s": 0.01},
                     arrivals={"kind": "poisson", "rate_per_s": 1.0}, horizon_s=5.0))
    assert r.manifest["compiled_modules"] == list(build.compiled_modules())
    for name in r.manifest["compiled_modules"]:
        assert name.startswith("agentsim.")


def fake_build(tmp_path: Path, modules: list[str], stamped: list[str] | None = None) -> Path:
    """A package tree ``agentsim`` with a source and an extension file for each of ``modules`` (paths below the
    package, without suffix), stamped with the sources of ``stamped`` (default: all of them)."""
    pkg = tmp_path / "agentsim"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in modules:
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f"{name}.py").write_text(f"# {name} as compiled\n")
        (pkg / f"{name}{suffix}").write_bytes(b"")
    dotted = ["agentsim." + name.replace("/", ".") for name in (modules if stamped is None else stamped)]
    (pkg / "_compiled.json").write_text(build.stamp(tmp_path, dotted))
    return pkg


@pytest.fixture
def fake_root(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point ``agentsim.build`` at a package tree: ``fake_root(pkg)``."""

    def point(pkg: Path) -> None:
        monkeypatch.setattr(build, "_ROOT", pkg)
        build.compiled_modules.cache_clear()

    yield point
    build.compiled_modules.cache_clear()


def test_stale_compiled_modules_are_detected_by_content(tmp_path: Path, fake_root: Any) -> None:
    pkg = fake_build(tmp_path, ["engine/clock", "serving/replica"])
    fake_root(pkg)
    assert json.loads((pkg / "_compiled.json").read_text())["agentsim.engine.clock"] == hashlib.sha256(
        b"# engine/clock as compiled\n").hexdigest()
    assert build.compiled_modules() == ("agentsim.engine.clock", "agentsim.serving.replica")
    assert build.stale_modules() == []
    (pkg / "engine/clock.py").touch()  # a newer file time with the same content is not an edit
    assert build.stale_modules() == []
    (pkg / "serving/replica.py").write_text("# edited after the build\n")
    assert build.stale_modules() == ["agentsim.serving.replica"]
    with pytest.warns(UserWarning, match=r"agentsim\.serving\.replica.*pip install -e"):
        build.warn_if_stale()
    (pkg / "_compiled.json").unlink()  # compiled from an unknown source (a build that did not finish): say so
    assert build.stale_modules() == ["agentsim.engine.clock", "agentsim.serving.replica"]
    (pkg / "_compiled.json").write_text("[]")  # not a stamp
    assert build.stale_modules() == ["agentsim.engine.clock", "agentsim.serving.replica"]


def test_extensions_and_stamp_entries_without_each_other_are_stale(tmp_path: Path, fake_root: Any) -> None:
    """An extension the stamp does not list (left by an older build: a module since moved, renamed or no
    longer compiled, whose extension shadows its new source), an extension whose source is gone, and a stamp
    entry without an extension (the build removed or never made it) are all stale."""
    pkg = fake_build(tmp_path, ["engine/clock", "engine/events", "serving/replica"], stamped=["engine/events"])
    fake_root(pkg)
    assert build.stale_modules() == ["agentsim.engine.clock", "agentsim.serving.replica"]
    (pkg / "serving/replica.py").unlink()
    assert build.stale_modules() == ["agentsim.engine.clock", "agentsim.serving.replica"]
    pkg = fake_build(tmp_path / "other", ["engine/events"], stamped=["engine/events", "serving/kvcache"])
    fake_root(pkg)
    assert build.compiled_modules() == ("agentsim.engine.events",)
    assert build.stale_modules() == ["agentsim.serving.kvcache"]
    for ext in build.extension_files(pkg):
        ext.unlink()
    fake_root(pkg)  # compiled_modules() is cached: the extensions are read once per process
    assert build.compiled_modules() == ()
    assert build.stale_modules() == ["agentsim.engine.events", "agentsim.serving.kvcache"]
    (pkg / "_compiled.json").unlink()  # pure Python: nothing compiled, nothing stamped
    assert build.stale_modules() == []


def test_builds_remove_the_extensions_they_did_not_make(tmp_path: Path) -> None:
    """What ``setup.py`` removes: a compiled build, the extension files of modules it did not compile and mypyc
    group libraries of other builds (never a source, bytecode or data file); a pure-Python build, every
    extension file of agentsim's, every group library and the stamp."""
    pkg = fake_build(tmp_path, ["engine/clock", "engine/events", "serving/replica"])
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    abi3 = pkg / "engine/minheap.abi3.so"  # any extension suffix counts
    abi3.write_bytes(b"")
    groups = [tmp_path / f"{h}__mypyc{suffix}" for h in ("0123abcd", "4567ef01")]
    for path in groups:
        path.write_bytes(b"")
    others = [pkg / "engine/__pycache__/clock.cpython-311.pyc", pkg / "catalog/gpus.yaml", tmp_path / "setup.so.txt"]
    for path in others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    made = ["agentsim.engine.events", "agentsim.serving.replica", "0123abcd__mypyc"]
    assert sorted(build.leftovers(pkg, made)) == sorted([pkg / f"engine/clock{suffix}", abi3, groups[1]])
    assert sorted(build.leftovers(pkg)) == sorted([
        *(pkg / f"{name}{suffix}" for name in ["engine/clock", "engine/events", "serving/replica"]),
        abi3, *groups, pkg / "_compiled.json",
    ])
    assert build.leftovers(pkg, []) == build.leftovers(pkg)
    assert build.module_name("src/agentsim/serving/replica.py") == "agentsim.serving.replica"


def test_setup_stamps_the_compiled_list_from_its_sources() -> None:
    """``setup.py`` compiles COMPILED and stamps exactly those modules; this install's stamp, when compiled,
    is one of them (the suite would not run on a stale one: ``conftest.py``)."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "setup.py").read_text()
    listed = [build.module_name(p) for p in re.findall(r'^    "(src/agentsim/[\w/]+\.py)",$', text, re.M)]
    assert len(listed) == 20 and len(set(listed)) == 20
    if build.compiled_modules():
        assert build.compiled_modules() == tuple(sorted(listed))
        assert json.loads((Path(build.__file__).parent / build.STAMP).read_text()) == json.loads(
            build.stamp(root / "src", listed))


CONFTEST_CHECK = """
def test_ran() -> None:
    pass
"""


def test_the_suite_refuses_to_run_stale_compiled_code(tmp_path: Path) -> None:
    """``tests/conftest.py`` against a package with a stray extension: pytest stops with the module and the
    rebuild command, exit status 4; ``AGENTSIM_ALLOW_STALE=1`` runs the tests anyway."""
    site = tmp_path / "site"
    pkg = fake_build(site, ["engine/clock"], stamped=[])
    shutil.copy(Path(build.__file__), pkg / "build.py")
    (pkg / "__init__.py").write_text("")
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(Path(__file__).parent / "conftest.py", suite / "conftest.py")
    (suite / "test_one.py").write_text(CONFTEST_CHECK)

    def pytest_run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(suite)], cwd=suite, text=True,
            capture_output=True, env={**os.environ, "PYTHONPATH": str(site), "AGENTSIM_ALLOW_STALE": "", **env},
        )

    refused = pytest_run()
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.stdout + refused.stderr
    out = refused.stdout + refused.stderr
    assert "agentsim.engine.clock" in out and "pip install -e ." in out and "AGENTSIM_PURE_PYTHON=1" in out
    assert "1 passed" not in out
    allowed = pytest_run(AGENTSIM_ALLOW_STALE="1")
    assert allowed.returncode == 0 and "1 passed" in allowed.stdout, allowed.stdout + allowed.stderr
    (pkg / "_compiled.json").write_text(build.stamp(site, ["agentsim.engine.clock"]))
    fresh = pytest_run()
    assert fresh.returncode == 0 and "1 passed" in fresh.stdout, fresh.stdout + fresh.stderr


PURE_RUN = """
import io, sys
sys.path.insert(0, sys.argv[1])
import agentsim.serving.replica as replica
assert replica.__file__.endswith(".py"), replica.__file__  # the interpreted source, not the extension
from agentsim.build import compiled_modules
assert compiled_modules() == ()
import pyarrow.parquet as pq
from agentsim.api import load_scenario
from agentsim.api import run
r = run(load_scenario(sys.argv[2]))
pq.write_table(r.calls, sys.argv[3])
"""


def test_the_interpreted_source_gives_the_compiled_results_bit_for_bit(tmp_path: Path) -> None:
    """The fallback (no C compiler, or AGENTSIM_PURE_PYTHON=1) runs the very source mypyc compiled: same
    results, to the bit. Runs the package's sources from a copy without extensions in a subprocess."""
    if not build.compiled_modules():
        pytest.skip("agentsim is installed as pure Python here: there is no compiled build to compare with")
    src = Path(build.__file__).parent
    pure = tmp_path / "src"
    shutil.copytree(src, pure / "agentsim", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", build.STAMP))
    s = scenario(
        profile="coding-agent", perf={"kind": "roofline"}, replicas=2,
        arrivals={"kind": "closed", "agents": 32, "think_s": const(1.0)}, horizon_s=240.0,
        engine={"kv_capacity_tokens": 200_000},  # tight: evictions and preemptions
    )
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(s.model_dump(mode="json")))
    out = tmp_path / "calls.parquet"
    subprocess.run([sys.executable, "-c", PURE_RUN, str(pure), str(spec_file), str(out)], check=True)
    here = run(s).calls
    there = pq.read_table(out)
    assert here.num_rows > 250
    assert sum(here.column("preemptions").to_pylist()) > 0
    assert here.column("preemptions").to_pylist() == there.column("preemptions").to_pylist()
    assert parquet_bytes(here) == parquet_bytes(there)
