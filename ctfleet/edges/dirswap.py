"""A directory replaced as one unit: readers see the old files or the new ones, never a mix.

A fleet directory holds ``sites.csv`` and ``devices.csv``; replacing them one after the
other (even each atomically) leaves new sites beside old devices if the process is
interrupted or the disk fills between the two. :func:`replace_dir` instead writes a
complete new directory beside the old one, then switches the two in **one** step:

    fleet-04/          the old files (readers keep reading them)
    .fleet-04.new-x/   the new files, written and fsynced
    renameat2(.fleet-04.new-x, fleet-04, RENAME_EXCHANGE)   -> one atomic switch
    .fleet-04.previous/  the old files, kept until the next import (a manual undo)

``RENAME_EXCHANGE`` (Linux >= 3.15; ext4, xfs, btrfs, tmpfs) swaps two directories
atomically, so the path never stops existing. Python has no binding for ``renameat2``,
hence the few lines of ctypes below; where it is missing (another OS, an old glibc, a
filesystem without it) the switch falls back to two renames, and :func:`read_files`
waits out the instant in which the path does not exist.

:func:`read_files` opens the directory once and every file relative to it, so a switch
in the middle of a read cannot mix two versions.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2() if sys.platform.startswith("linux") else None


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically; False where the system cannot (then nothing changed)."""
    sys.audit("ctfleet.dirswap.exchange", str(a), str(b))
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def staging_prefix(directory: Path) -> str:
    return f".{directory.name}.new-"


def previous_of(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.previous"


def replace_dir(directory: Path, write: Callable[[Path], None]) -> None:
    """Replace ``directory`` by what ``write(new_dir)`` puts in a fresh directory beside it.

    Other regular files of the old directory (a README a team keeps there) are carried over.
    On any exception (``KeyboardInterrupt`` included) before the switch the old directory is
    untouched and the staging directory removed; the exception propagates.
    """
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(directory)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(directory), dir=parent))
    try:
        write(staging)
        if directory.is_dir():
            for old_file in directory.iterdir():
                if old_file.is_file() and not old_file.is_symlink() and not (staging / old_file.name).exists():
                    shutil.copy2(old_file, staging / old_file.name)
        _fsync_dir(staging)
        if directory.exists():
            if exchange(staging, directory):
                old = staging  # the exchanged path now holds the old files
            else:  # two renames: the path is missing for an instant (read_files waits it out)
                old = previous_of(directory).with_name(previous_of(directory).name + ".tmp")
                shutil.rmtree(old, ignore_errors=True)
                os.rename(directory, old)
                os.rename(staging, directory)
            staging = None
            _keep_previous(directory, old)
        else:
            os.rename(staging, directory)
            staging = None
        _fsync_dir(parent)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _keep_previous(directory: Path, old: Path) -> None:
    previous = previous_of(directory)
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(old, previous)


def _sweep_stale(directory: Path) -> None:
    """Staging directories an interrupted run (SIGKILL, power loss) left behind."""
    for p in directory.parent.glob(staging_prefix(directory) + "*"):
        shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, text: str) -> None:
    """Write and fsync one file of a staging directory."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_files(directory: Path, names: Iterable[str], attempts: int = 5) -> dict[str, bytes | None]:
    """The bytes of each named file (None when absent), all from one version of ``directory``.

    The directory is opened once and each file relative to it. If a switch removed that
    version while it was being read (a file vanished), it reads again.
    """
    names = list(names)
    for attempt in range(attempts):
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if attempt + 1 < attempts and previous_of(directory).exists():
                time.sleep(0.01 * (attempt + 1))  # between the two renames of the fallback
                continue
            raise
        try:
            out: dict[str, bytes | None] = {}
            for name in names:
                try:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                except FileNotFoundError:
                    out[name] = None
                    continue
                with os.fdopen(fd, "rb") as fh:
                    out[name] = fh.read()
            if os.stat(dir_fd).st_nlink == 0 and attempt + 1 < attempts:
                continue  # this version was deleted while read: read the current one
            return out
        finally:
            os.close(dir_fd)
    raise AssertionError("unreachable")
