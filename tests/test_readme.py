"""The README's commands work as written (issue 18): every command of every fenced block, in order, in one
fresh working directory, the way a new user would paste them.

What the test changes, and why:

* ``pip install ...`` is the environment the suite already runs in: the part after ``&&`` runs.
* The example scenario (``agentsim example > scenario.yaml``) is shortened to a 10-minute horizon right after it
  is written, so the sweep and the plan that use it take seconds, not minutes. Built-in scenarios run as is.
* Input files the README names but no command creates are put in place first (:data:`INPUTS`): the public
  Mooncake trace from ``../shared/data`` and the repository's benchmark points. Their absence skips the test.

Each command must exit 0 without a traceback; the Python block runs in the same directory afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared_data import TRACES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INPUTS = {  # the README's name -> where the file comes from
    "conversation_trace.jsonl": TRACES / "mooncake" / "conversation_trace.jsonl",
    "measurements.csv": ROOT / "tests" / "data" / "perf" / "trtllm_slice.csv",
    "points.csv": ROOT / "experiments" / "fidelity" / "data" / "dense_hopper.csv",
}
SHELL = ("", "sh", "bash")  # blocks of commands; ```text blocks (the layout) are not run
SHORT_HORIZON = {"horizon_s": 600, "warmup_s": 120}


def blocks() -> list[tuple[str, str]]:
    """The README's fenced blocks: (language, text)."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]


def commands(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, ``  # comments`` dropped, ``pip install ... &&``
    prefixes removed."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^pip install [^&]*&&\s*", "", line)
        if line.startswith("pip install"):
            continue
        out.append(line)
    return out


def shorten(scenario: Path) -> None:
    text = scenario.read_text()
    for key, value in SHORT_HORIZON.items():
        text, n = re.subn(rf"^{key}:\s*[0-9.e+]+", f"{key}: {value}", text, flags=re.M)
        assert n == 1, f"the example scenario has no top-level {key}"
    scenario.write_text(text)


def test_readme_blocks_parse() -> None:
    """The parser finds the blocks the test runs: the two quick-start blocks, the command list, Python."""
    langs = [lang for lang, _ in blocks()]
    assert langs.count("python") == 1
    cmds = [c for lang, t in blocks() if lang in SHELL for c in commands(t)]
    assert cmds[:2] == ["agentsim run", "python -m pytest"]
    assert any(c.startswith("agentsim sweep ") and "--out sweeps/s1" in c for c in cmds)  # continuation joined


@pytest.mark.skipif(not all(p.exists() for p in INPUTS.values()), reason="public data (../shared/data) absent")
def test_every_readme_command_runs(tmp_path: Path) -> None:
    work = tmp_path / "user"
    work.mkdir()
    for name, src in INPUTS.items():
        shutil.copy(src, work / name)
    shutil.copytree(ROOT / "traces", work / "traces")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "120"}
    env.pop("AGENTSIM_DEBUG", None)
    ran = []
    for lang, text in blocks():
        if lang == "python":
            code = text
            cmd_list = [f"{sys.executable} -"]
        elif lang in SHELL:
            code = None
            cmd_list = [c for c in commands(text) if c != "python -m pytest"]  # the suite itself: not again
        else:
            continue
        for cmd in cmd_list:
            t0 = time.perf_counter()
            done = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, input=code, capture_output=True,
                                  text=True, timeout=300, check=False)  # fmt: skip
            assert done.returncode == 0, f"{cmd}\nexit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, f"{cmd}\n{done.stderr[-3000:]}"
            ran.append(cmd)
            print(f"{time.perf_counter() - t0:6.1f} s  {cmd[:100]}")
            if cmd.startswith("agentsim example") and "> scenario.yaml" in cmd:
                shorten(work / "scenario.yaml")
    assert len(ran) >= 20
    assert (work / "plan.json").exists() and (work / "runs" / "a" / "summary.json").exists()
