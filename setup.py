"""Build hook: compile the simulation's hot modules to C with mypyc, from the same typed Python source.

Everything else about the package lives in ``pyproject.toml``. The modules below run once or more per simulated
LLM call (the engine, the KV cache, routing, the agents, the row recorder); compiled by mypyc they run several
times faster, and they stay ordinary, ``mypy --strict``-clean Python that runs unchanged when not compiled.

* ``AGENTSIM_PURE_PYTHON=1 pip install -e .`` skips compilation (for stepping through the engine in a debugger).
* If mypyc or a C compiler is missing, or compilation fails, the package installs as pure Python and says so;
  ``agentsim.compiled()`` tells at run time which modules are compiled, and every run's ``manifest.json``
  records it next to its speed.
* After editing a compiled module in an editable install, re-run ``pip install -e .``: importing agentsim warns
  when a compiled module is older than its source.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup

STAMP = "src/agentsim/_compiled.json"  # {module: sha256 of the source it was compiled from}

# The hot path of a run, leaves first. A compiled class cannot be subclassed by interpreted code unless it
# says so: PerfModel does (mypyc_attr), so users' and the table/curve perf models extend it from Python.
COMPILED = [
    "src/agentsim/perf/base.py",
    "src/agentsim/perf/linear.py",
    "src/agentsim/perf/roofline.py",
    "src/agentsim/workload/distributions.py",
    "src/agentsim/workload/taskgraph.py",
    "src/agentsim/workload/arrivals.py",
    "src/agentsim/workload/profiles.py",
    "src/agentsim/engine/minheap.py",
    "src/agentsim/engine/events.py",
    "src/agentsim/serving/call.py",
    "src/agentsim/serving/kvcache.py",
    "src/agentsim/serving/replica.py",
    "src/agentsim/serving/routing.py",
    "src/agentsim/serving/tools.py",
    "src/agentsim/serving/cluster.py",
    "src/agentsim/engine/agents.py",
    "src/agentsim/engine/records.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("AGENTSIM_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("agentsim: mypyc not available, installing pure Python (slower)", file=sys.stderr)
        return []
    try:
        # "--config-file=": ignore pyproject's mypy settings (its pydantic plugin is not in the build
        # environment); third-party types are then Any, which costs nothing on the hot path. Modules outside
        # the compiled set are type-checked by the project's own mypy run, so their errors are silenced here.
        exts = list(
            mypycify(
                ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent", *COMPILED],
                opt_level="3",
                debug_level="0",
            )
        )
    except (Exception, SystemExit) as e:  # a type error in the compiled set: fall back rather than fail the install
        print(f"agentsim: mypyc compilation unavailable ({e}); installing pure Python (slower)", file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no C compiler: setuptools skips the extension and the .py module is used
    write_stamp()
    return exts


def write_stamp() -> None:
    """Record the SHA-256 of each compiled source, so that agentsim can tell at import when an edited module
    still runs its previously compiled code (``agentsim.build``)."""
    stamp = {
        path.removeprefix("src/").removesuffix(".py").replace("/", "."): hashlib.sha256(
            Path(path).read_bytes()
        ).hexdigest()
        for path in COMPILED
    }
    Path(STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")


setup(ext_modules=ext_modules())
