"""Atomic file writes: write a temporary file beside the target, then rename it over the target.

Temporary names are `.<target name>.<random>` + TEMP_MARKER + `<target suffix>` (the suffix is kept
because some writers, e.g. OpenCV's VideoWriter, choose the format by it), so the leftovers of a
writer killed mid-write (kill -9, power loss) are recognisable and `remove_stale_temps` can delete
them once no writer can be active in the folder.
"""
import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_MARKER = ".atomic-tmp"
# Names of this module's temporary files and folders, and those of versions before TEMP_MARKER:
# `.<name>.<8 mkstemp characters><suffix of name, or .tmp>`.
_TEMP_NAME = re.compile(rf"\.(?P<name>.+)\.[a-z0-9_]{{8}}(?:{re.escape(TEMP_MARKER)})?(?P<suffix>\.[^.]*)?")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARKER + path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class NotWritable(OSError):
    """An output place that cannot be written: `filename` names it, `strerror` says why."""


def check_writable(path, folder=False):
    """Raise NotWritable unless a file (`folder`: a folder) can be written at `path` now: what exists
    of it is of that kind, and a file can be created in its nearest existing folder (tried, then
    removed; nothing else is created). For checks before long work rather than after it."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise NotWritable(errno.EEXIST, "a file, a folder is needed" if folder else "a folder, a file name is needed",
                          str(path))
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotWritable(errno.ENOTDIR, f"{existing} is a file, not a folder", str(path))
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check.", suffix=TEMP_MARKER)
    except OSError as e:
        raise NotWritable(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text):
    """Write `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode())


@contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside `path`; it replaces `path` (and its contents) when the block
    ends without error and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARKER))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def is_temp_name(name):
    """True for the name of a temporary file or folder of this module (marked, or of older versions).

    An unmarked name only counts when it ends with its target's suffix (.tmp for a target without
    one), so other hidden files are left alone.
    """
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return False
    if TEMP_MARKER in name:
        return True
    suffix = match["suffix"] or ""
    return suffix == ".tmp" or (suffix != "" and match["name"].endswith(suffix))


def remove_stale_temps(folder):
    """Delete the temporary files and folders of interrupted atomic writes directly in `folder`.

    Only safe while no writer is active there (e.g. under the folder's `lib.utils.lock` lock).
    Returns the sorted names removed ([] when `folder` does not exist).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if not is_temp_name(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed
