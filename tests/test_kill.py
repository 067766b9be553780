"""Killed processes leave nothing behind (issue 16 part 4): a killed run leaves no output or only a complete
one, and the next write in that directory removes the temporaries of writers that are gone; ``--overwrite``
never leaves the output path missing, whenever the kill comes; the workers of a sweep die with it.

Each test kills a real process with SIGKILL (no handler can run), the way a user's ``kill -9`` or an
out-of-memory killer would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from agentsim.files import atomic_path
from helpers import TINY

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc: Linux")

SCENARIO = {**TINY, "name": "kill"}


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_at(tmp_path: Path, where: str) -> subprocess.CompletedProcess[str]:
    """Replace the directory ``out`` (holding ``old``) by one holding ``new`` with ``overwrite``, SIGKILLed
    ``where``: just before the atomic exchange, or just after it (before the old copy is removed)."""
    code = textwrap.dedent(
        f"""
        import os, signal, shutil
        from pathlib import Path
        from agentsim import files
        where = {where!r}
        real_exchange = files._exchange
        def exchange(a, b):
            if where == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            ok = real_exchange(a, b)
            if where == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return ok
        files._exchange = exchange
        with files.atomic_path(Path({str(tmp_path / "out")!r}), overwrite=True, directory=True) as tmp:
            (tmp / "content").write_text("new")
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("where,expected", [("before", "old"), ("after", "new")])
def test_overwrite_never_leaves_the_path_missing(tmp_path: Path, where: str, expected: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "content").write_text("old")
    r = _kill_at(tmp_path, where)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (out / "content").read_text() == expected  # the old directory or the new one, never nothing
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # the killed writer's temporary (holding the other copy)
    with atomic_path(tmp_path / "next.txt") as tmp:
        tmp.write_text("x")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


RUN_FILES = {"calls.parquet", "tasks.parquet", "replicas.parquet", "pools.parquet", "summary.json", "manifest.json"}


def _run_killed_mid_write(scenario: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``agentsim run SCENARIO -o OUT --overwrite``, SIGKILLed by itself while the run's files are being placed
    (after the first table file is in the temporary directory, before the others)."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from agentsim import cli, store
        real = store._link_or_copy
        def link_then_die(src, dst):
            real(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        store._link_or_copy = link_then_die
        sys.argv = ["agentsim", "run", {str(scenario)!r}, "-o", {str(out)!r}, "-q", "--overwrite"]
        cli.main()
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_killed_run_leaves_a_complete_output_or_none(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / "run"
    r = _run_killed_mid_write(s, out)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists()  # killed while writing a new run: nothing at the path
    done = subprocess.run([sys.executable, "-m", "agentsim", "run", str(s), "-o", str(out), "-q"], check=False)
    assert done.returncode == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert set(before) == RUN_FILES
    r = _run_killed_mid_write(s, out)  # killed while replacing it (--overwrite): the old run, whole
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    # the next run in that place cleans the killed writers' temporaries
    r2 = subprocess.run([sys.executable, "-m", "agentsim", "run", str(s), "-o", str(out), "-q", "--overwrite"])
    assert r2.returncode == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sweep_workers_die_with_the_sweep(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump({**SCENARIO, "horizon_s": 3600}))
    cmd = [sys.executable, "-m", "agentsim", "sweep", str(s), "-p", "seed=1,2,3,4", "-w", "2", "-q",
           "-o", str(tmp_path / "sw")]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(p.pid)
        assert len(workers) >= 2, "the sweep did not start its workers"
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their sweep"
    finally:
        if p.poll() is None:
            p.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def _interrupt(cmd: list[str], wait_for: str | None, delay: float) -> tuple[int, str]:
    """Start ``cmd`` in its own process group, wait for a stderr line containing ``wait_for`` (or ``delay``
    seconds), then send SIGINT to the whole group, as Ctrl-C in a terminal does; return (exit code, stderr)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stderr is not None
    seen = []
    try:
        if wait_for is not None:
            for line in p.stderr:
                seen.append(line)
                if wait_for in line:
                    break
        else:
            time.sleep(delay)
        os.killpg(p.pid, signal.SIGINT)
        rest = p.stderr.read()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, "".join(seen) + rest


def test_ctrl_c_says_what_was_finished_and_how_to_resume(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump({**SCENARIO, "horizon_s": 3600, "workload": [
        {"profile": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 20}}]}))  # fmt: skip
    sweep = [sys.executable, "-m", "agentsim", "sweep", str(s), "-p", "seed=1,2,3,4,5,6", "-w", "1",
             "-o", str(tmp_path / "sw")]  # fmt: skip
    code, err = _interrupt(sweep, "1/6 points done", 0)
    assert code == 130, err
    assert "Traceback" not in err
    assert re.search(r"interrupted: [1-5] of 6 points done; every finished run is kept in .*sw", err), err
    assert "Rerun the same command to resume" in err
    done = subprocess.run(sweep, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    first = re.search(r"sweep: (\d)/6 points done", done.stderr)
    assert first is not None and int(first.group(1)) >= 1, done.stderr  # resumed, not restarted

    # A run long enough that 2.5 s of wall time cannot finish it on a fast machine (the hour above takes ~2 s).
    s.write_text(yaml.safe_dump({**SCENARIO, "horizon_s": 36000, "workload": [
        {"profile": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 20}}]}))  # fmt: skip
    out = tmp_path / "run"
    # Ctrl-C must land once the run is simulating, not while Python still imports (a loaded machine, such as the
    # test suite beside other work on two cores, takes seconds to import pyarrow): wait three import times.
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import agentsim.cli"], check=True, timeout=120)
    delay = max(2.5, 3.0 * (time.monotonic() - started))
    code, err = _interrupt([sys.executable, "-m", "agentsim", "run", str(s), "-o", str(out)], None, delay)
    assert code == 130 and "Traceback" not in err, err
    assert re.search(r"interrupted at [\d,]+ of 36,000 simulated s", err) and "nothing was written" in err, err
    assert not out.exists()
