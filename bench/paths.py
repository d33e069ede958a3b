"""Output paths checked before any work: a report that cannot be written must fail in the first
second, not after an hour of evaluation (the results would be in the store, but the user would
have to find out why nothing was written and run again).

The checks look at what exists: the path itself, and its folder, which must exist (unless the
writer creates it; then the nearest existing folder above) and accept a new file (tried with a
temporary file, so read-only mounts, permissions and pseudo-filesystems all answer truthfully,
even for root). Nothing is created but that probe.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.errors import BenchError


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names something, answering False where the file system cannot even look
    the name up (a name too long for it, a NUL byte), as for any other name that names nothing:
    user text (a model id, a task name) is tried as a path before it is read as anything else."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_writable_folder(folder: Path, option: str, path: Path) -> None:
    if not folder.is_dir():
        raise BenchError(f"{option} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BenchError(
            f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None


def check_output_file(path: Path, option: str, *, creates_folders: bool = False) -> Path:
    """``path`` if a file can be written there; a one-line BenchError naming ``option`` if not.

    The file's folder must exist: writing a file does not create folders, so a missing one
    would only fail once the work was done. ``creates_folders`` is for the writers that do
    create them (the default results store's folder); then the nearest existing folder above
    must accept them."""
    if path.is_dir():
        raise BenchError(f"{option} {path} is a directory; give a file name")
    if path.exists():
        if path.is_file() and not os.access(path, os.W_OK):
            raise BenchError(f"{option} {path} is not writable")
        if not path.is_file() and not path.is_char_device():
            # A FIFO would block the write; /dev/null and /dev/stdout are fine.
            raise BenchError(f"{option} {path} is not a regular file")
        return path
    nearest = _nearest_existing(path.parent)
    # A file above is the better answer than a missing folder (a_file/x.md: a_file is the
    # mistake), and a missing folder than the read-only root a missing tree ends at.
    if nearest.is_dir() and nearest != path.parent.absolute() and not creates_folders:
        raise BenchError(f"{option} {path}: folder {path.parent} does not exist (create it first)")
    _check_writable_folder(nearest, option, path)
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """``path`` if it is, or can be created as, a writable folder; else a one-line BenchError."""
    if path.exists() and not path.is_dir():
        raise BenchError(f"{option} {path} is a file, not a folder")
    _check_writable_folder(_nearest_existing(path), option, path)
    return path
