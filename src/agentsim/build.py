"""Which of agentsim's modules run compiled (mypyc, see ``setup.py``), and whether a compiled one is stale.

The hot modules are compiled to C extensions from the same typed source at install time. An extension sits
beside its ``.py`` file and takes precedence on import, so in an editable install an edited module keeps
running its old compiled code until ``pip install -e .`` is run again: :func:`warn_if_stale` says so at import
(by content, not file times, so a ``git checkout`` that rewrites identical files does not trigger it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import json
import warnings
from pathlib import Path

_ROOT = Path(__file__).parent
STAMP = "_compiled.json"


@functools.cache
def compiled_modules() -> tuple[str, ...]:
    """Dotted names of the agentsim modules that have a compiled extension beside their source."""
    names: set[str] = set()
    for path in _ROOT.rglob("*.*"):
        rel = path.relative_to(_ROOT.parent).as_posix()
        # EXTENSION_SUFFIXES lists the most specific first (".cpython-311-x86_64-linux-gnu.so", ..., ".so").
        suffix = next((s for s in importlib.machinery.EXTENSION_SUFFIXES if rel.endswith(s)), None)
        if suffix is not None:
            names.add(rel[: -len(suffix)].replace("/", "."))
    return tuple(sorted(names))


def stale_modules() -> list[str]:
    """Compiled modules whose ``.py`` source differs from the one they were compiled from (edited since the
    last build). ``setup.py`` records the SHA-256 of each compiled source in ``_compiled.json``."""
    compiled = compiled_modules()
    if not compiled:
        return []
    try:
        stamp: dict[str, str] = json.loads((_ROOT / STAMP).read_text())
    except (OSError, ValueError):
        return list(compiled)  # compiled, but from which source is unknown
    stale = []
    for name in compiled:
        py = _ROOT.parent / (name.replace(".", "/") + ".py")
        if py.exists() and stamp.get(name) != hashlib.sha256(py.read_bytes()).hexdigest():
            stale.append(name)
    return stale


def warn_if_stale() -> None:
    """Warn when an edited module still runs its previously compiled code."""
    stale = stale_modules()
    if stale:
        warnings.warn(
            f"agentsim: compiled module(s) older than their source: {', '.join(stale)}; the old compiled code "
            "runs. Rebuild with `pip install -e .` (or AGENTSIM_PURE_PYTHON=1 pip install -e . to run the source).",
            stacklevel=2,
        )
