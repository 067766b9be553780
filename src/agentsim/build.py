"""Which of agentsim's modules run compiled (mypyc, see ``setup.py``), and whether a compiled one is stale.

The hot modules are compiled to C extensions from the same typed source at install time. An extension sits
beside its ``.py`` file and takes precedence on import, so in an editable install an edited module keeps
running its old compiled code until ``pip install -e .`` is run again. A successful build records the SHA-256
of each source it compiled in ``_compiled.json`` (the stamp); a module is *stale* when its extension and the
stamp disagree with the source: edited since the build (by content, not file times, so a ``git checkout`` that
rewrites identical files does not count), an extension the stamp does not list (left by an older build, or a
module no longer compiled), or a stamp entry without its extension. :func:`warn_if_stale` says so at import;
the test suite refuses to run (``tests/conftest.py``).

``setup.py`` loads this module by file path (the package itself is not importable in the build environment),
so it imports nothing from agentsim: it also decides what a build removes (:func:`leftovers`) and what it
stamps (:func:`stamp`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import json
import warnings
from collections.abc import Collection, Iterable
from pathlib import Path

_ROOT = Path(__file__).parent
STAMP = "_compiled.json"
GROUP = "__mypyc"  # mypyc's shared library of a compiled group, beside the package: src/<hash>__mypyc.<suffix>
REBUILD = "`pip install -e .` (or `AGENTSIM_PURE_PYTHON=1 pip install -e .` to run the source)"


def _module_of(path: Path, base: Path) -> str | None:
    """The dotted module name of an extension file below ``base``; None when ``path`` is not an extension."""
    rel = path.relative_to(base).as_posix()
    # EXTENSION_SUFFIXES lists the most specific first (".cpython-311-x86_64-linux-gnu.so", ..., ".so").
    suffix = next((s for s in importlib.machinery.EXTENSION_SUFFIXES if rel.endswith(s)), None)
    return None if suffix is None else rel[: -len(suffix)].replace("/", ".")


def extension_files(package: Path) -> dict[Path, str]:
    """Every C extension file under the package directory ``package``, with the module it provides."""
    found = ((p, _module_of(p, package.parent)) for p in sorted(package.rglob("*.*")))
    return {p: m for p, m in found if m is not None}


def group_libraries(top: Path) -> dict[Path, str]:
    """mypyc's group libraries in ``top`` (the directory that holds the package), with their module names."""
    found = ((p, _module_of(p, top)) for p in sorted(top.glob(f"*{GROUP}.*")))
    return {p: m for p, m in found if m is not None and m.endswith(GROUP)}


def leftovers(package: Path, keep: Collection[str] | None = None) -> list[Path]:
    """Extension files a build removes: those of modules (and group libraries) not in ``keep``, the extensions
    the build made; with none kept (pure Python) every one of agentsim's, and the stamp."""
    keep = keep or ()
    found = {**extension_files(package), **group_libraries(package.parent)}
    stale = [p for p, module in found.items() if module not in keep]
    if not keep and (package / STAMP).exists():
        stale.append(package / STAMP)
    return stale


def module_name(source: str) -> str:
    """``src/agentsim/serving/replica.py`` -> ``agentsim.serving.replica``."""
    return source.removeprefix("src/").removesuffix(".py").replace("/", ".")


def stamp(top: Path, modules: Iterable[str]) -> str:
    """The stamp's text: the SHA-256 of each module's source below ``top``, as JSON."""
    digests = {m: _digest(top / (m.replace(".", "/") + ".py")) for m in modules}
    return json.dumps(digests, indent=1, sort_keys=True) + "\n"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@functools.cache
def compiled_modules() -> tuple[str, ...]:
    """Dotted names of the agentsim modules that have a compiled extension beside their source."""
    return tuple(sorted(set(extension_files(_ROOT).values())))


def stale_modules() -> list[str]:
    """Modules whose compiled extension does not match their source: the source edited since the build, an
    extension without a stamp entry (or a source), or a stamp entry without an extension."""
    compiled = compiled_modules()
    try:
        recorded = json.loads((_ROOT / STAMP).read_text())
    except (OSError, ValueError):
        recorded = {}  # no stamp (pure Python, or a build that did not finish): every extension is unaccounted
    if not isinstance(recorded, dict):
        recorded = {}
    stale = {m for m in recorded if m not in compiled}
    for name in compiled:
        digest = _digest(_ROOT.parent / (name.replace(".", "/") + ".py"))
        if digest is None or recorded.get(name) != digest:
            stale.add(name)
    return sorted(stale)


def stale_message(stale: Iterable[str]) -> str:
    """What is stale and how to rebuild, in one paragraph."""
    return (
        f"agentsim: compiled module(s) out of step with their source (edited since the build, or left by another "
        f"build): {', '.join(stale)}. Rebuild with {REBUILD}."
    )


def warn_if_stale() -> None:
    """Warn when an edited module still runs its previously compiled code."""
    stale = stale_modules()
    if stale:
        warnings.warn(stale_message(stale), stacklevel=2)
