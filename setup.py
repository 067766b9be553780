"""Build hook: compile the simulation's hot modules to C with mypyc, from the same typed Python source.

Everything else about the package lives in ``pyproject.toml``. The modules below run once or more per simulated
LLM call (the engine, the KV cache, routing, the agents, the row recorder); compiled by mypyc they run several
times faster, and they stay ordinary, ``mypy --strict``-clean Python that runs unchanged when not compiled.

* ``AGENTSIM_PURE_PYTHON=1 pip install -e .`` skips compilation (for stepping through the engine in a debugger).
* If mypyc or a C compiler is missing, or compilation fails, the package installs as pure Python and says so;
  ``agentsim.build.compiled_modules()`` tells at run time which modules are compiled, and every run's ``manifest.json``
  records it next to its speed.
* A build stamps what it compiled (``src/agentsim/_compiled.json``: the SHA-256 of each source) only once every
  extension is built; it removes the extension files of modules it no longer compiles, and a pure-Python install
  removes them all and the stamp (``pip install -v`` shows what). After editing a compiled module, re-run
  ``pip install -e .``: importing agentsim warns, and the test suite refuses to run, while a compiled module is
  out of step with its source (``agentsim.build``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SRC = Path("src")


def _load(name: str) -> ModuleType:
    """A stdlib-only module of agentsim, by file path: the package is not importable in the build environment,
    and its ``__init__`` would import everything."""
    spec = importlib.util.spec_from_file_location(f"_agentsim_setup_{name}", SRC / "agentsim" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("build")  # what to remove, what to stamp
files = _load("files")  # the atomic writer

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
    "src/agentsim/serving/tiers.py",
    "src/agentsim/serving/admission.py",
    "src/agentsim/serving/prefix.py",
    "src/agentsim/serving/replica.py",
    "src/agentsim/serving/routing.py",
    "src/agentsim/serving/tools.py",
    "src/agentsim/serving/cluster.py",
    "src/agentsim/engine/agents.py",
    "src/agentsim/engine/records.py",
]


def remove(paths: list[Path], why: str) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    if paths:
        print(f"agentsim: {why}; removed {', '.join(p.as_posix() for p in paths)}", file=sys.stderr)


def pure(why: str) -> list[object]:
    """No extensions: remove the ones earlier builds left beside the sources, or they would keep running."""
    print(f"agentsim: {why}; installing pure Python (slower)", file=sys.stderr)
    remove(build.leftovers(SRC / "agentsim"), "pure Python")
    return []


def ext_modules() -> list[object]:
    if os.environ.get("AGENTSIM_PURE_PYTHON", "") not in ("", "0"):
        return pure("AGENTSIM_PURE_PYTHON is set")
    try:
        from mypyc.build import mypycify
    except ImportError:
        return pure("mypyc not available")
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
        return pure(f"mypyc compilation unavailable ({e})")
    for ext in exts:
        ext.optional = True  # no C compiler: setuptools skips the extension, and BuildExt falls back to the .py
    return exts


def stamping(text: str) -> type[build_ext]:
    """``build_ext`` that writes the stamp ``text`` (the sources' digests, taken before mypyc read them) only
    after every extension is built, in the directory they were built for: beside the sources for an editable
    install (setuptools builds in a temporary directory, then copies the files in place), else the wheel's
    build directory. A partial build (an optional extension failed) falls back to pure Python: the extensions
    it did build, and any older ones there, are removed."""

    class BuildExt(build_ext):
        def run(self) -> None:
            inplace = self.get_finalized_command("build_py").get_package_dir("agentsim") if self.inplace else None
            package = Path(inplace or os.path.join(self.build_lib, "agentsim"))
            # Unstamped until it succeeds: an interrupted or failed build leaves its extensions flagged stale.
            (package / build.STAMP).unlink(missing_ok=True)
            self.built: set[str] = set()
            super().run()
            names = {ext.name for ext in self.extensions}
            if self.built != names:
                print(f"agentsim: could not compile {', '.join(sorted(names - self.built))}; installing pure "
                      "Python (slower)", file=sys.stderr)
                remove(build.leftovers(package), "pure Python")
                return
            remove(build.leftovers(package, names), "no longer compiled")
            files.write_text(package / build.STAMP, text, overwrite=True)

        def build_extension(self, ext: Extension) -> None:
            super().build_extension(ext)  # a failed optional extension raises here; setuptools reports, skips it
            self.built.add(ext.name)

    return BuildExt


# Digests first: a source edited while mypyc compiles is then stale, not stamped as compiled.
stamp = build.stamp(SRC, [build.module_name(path) for path in COMPILED])
setup(ext_modules=ext_modules(), cmdclass={"build_ext": stamping(stamp)})
