"""Results written atomically: a reader, or a crash, never sees half a file, and nothing is replaced unless asked.

Everything agentsim writes (run directories, sweep tables, traces, reports, perf files) goes through
:func:`atomic_path`: the content is written into a hidden temporary sibling of the target, named
``.<target>.<pid>.<random>.tmp``, which is renamed onto the target only when the writing succeeded. A rename
within one directory is atomic on POSIX file systems, so the target is at every moment either its old content
or its new content.

* An existing target is refused (:class:`OutputExistsError`) unless ``overwrite``; a target that cannot be
  written (a parent is a file, a read-only directory) is refused before anything is written
  (:class:`OutputPathError`). Commands call :func:`check_output` for each output before they compute.
* Replacing a directory uses Linux's ``renameat2(RENAME_EXCHANGE)``, which swaps the two names in one step, so
  a kill at any moment leaves the old directory or the new one at the target, never nothing; elsewhere the old
  directory is moved aside first (a short window).
* A temporary sibling whose writer process no longer exists (killed) is removed by the next write in that
  directory (:func:`clean_stale_temps`); the process id in its name says whose it is.
* New files get the permissions the umask allows (``mkstemp`` would make them private).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


class OutputExistsError(FileExistsError):
    """The output exists and overwriting was not asked for."""


class OutputPathError(ValueError):
    """An output that cannot be written where asked: a parent is a file, or the directory is not writable."""


def check_output(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    directory: bool = False,
    exists_error: Callable[[str], Exception] = OutputExistsError,
) -> None:
    """Fail now, before any work, if ``target`` could not be written later by :func:`atomic_path`: it exists
    and ``overwrite`` is false, or exists as the other kind (``exists_error``); or a parent of it is a file, or
    its nearest existing directory does not take a new file (:class:`OutputPathError`; tried by creating and
    removing a temporary file there, so a read-only file system or a missing permission is found even for
    root). Missing directories are not created here."""
    out = Path(target)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise exists_error(f"{out} already exists; choose another output or pass --overwrite")
        if out.is_dir() != directory:
            kind = "a directory" if out.is_dir() else "a file"
            raise exists_error(f"{out} exists and is {kind}")
    for parent in out.absolute().parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise OutputPathError(f"cannot write {out}: {parent} is not a directory")
        try:
            fd, name = tempfile.mkstemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
        except OSError as e:
            raise OutputPathError(f"cannot write {out}: {parent}: {e.strerror or e}") from None
        os.close(fd)
        os.unlink(name)
        return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary siblings in ``directory`` whose writer process is gone; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m is None or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False when the
    system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(rc == 0)


def _replace_dir(tmp: Path, target: Path) -> None:
    if _exchange(tmp, target):
        shutil.rmtree(tmp)  # now holds the old directory
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old.tmp")
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old)


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    directory: bool = False,
    exists_error: Callable[[str], Exception] = OutputExistsError,
) -> Iterator[Path]:
    """A temporary path (an empty file, or an empty directory with ``directory``) next to ``target``; when the
    block succeeds it becomes ``target``, otherwise it is removed.

    Raises ``exists_error(message)`` when ``target`` exists and ``overwrite`` is false (before anything is
    written), or when it exists as the other kind (a file where a directory is written, or the reverse), and
    :class:`OutputPathError` when it cannot be written there (:func:`check_output`). Missing parent directories
    are created.
    """
    out = Path(target)
    check_output(out, overwrite=overwrite, directory=directory, exists_error=exists_error)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot write {out}: cannot create {parent}: {e.strerror or e}") from None
    clean_stale_temps(parent)
    prefix, suffix = f".{out.name}.{os.getpid()}.", ".tmp"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        tmp.chmod((0o777 if directory else 0o666) & ~_umask())
        if directory and out.is_dir():
            _replace_dir(tmp, out)
        else:
            os.replace(tmp, out)  # a file replaces a file atomically
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically (see :func:`atomic_path`)."""
    return write_bytes(target, text.encode("utf-8"), overwrite=overwrite)
