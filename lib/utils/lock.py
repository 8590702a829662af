"""Exclusive use of an output folder by one process (fcntl.flock on a lock file inside it).

The kernel releases a flock when the last descriptor of its open file closes, so the lock of a
process that dies, even by kill -9, is free at once (forked children such as DataLoader workers
share the descriptor and keep it until they exit too). The lock file records the holder's pid, host
and start time, which a refused process reports, and is removed when the holder finishes.
"""
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "train.lock"


class FolderLocked(RuntimeError):
    """Another live process holds the folder's lock."""


def _holder(fd):
    """'pid P on HOST, started T' of the lock file open at `fd`, or a note when it is not written yet."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "its pid and host are not written yet"


def _take(path, folder):
    """The descriptor of `path`'s lock file, exclusively locked; FolderLocked if another process holds it.

    A holder removes the file when it finishes, so a file locked here may already be unlinked: then
    the lock is on a file nobody else can find, and a new one is taken instead.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderLocked(f"{folder} is in use by another run ({holder}; lock file {path})") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def folder_lock(folder, name=LOCK_NAME):
    """Hold the exclusive lock of `folder` (created if needed) for the block; FolderLocked if taken.

    `name` is the lock file's (train.py's by default; eval.py locks its run folder with its own).
    A lock left by a dead process is taken over silently; the lock file is removed when the block
    ends (a process killed inside it leaves the file, which the next run takes over).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = _take(path, folder)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield path
    finally:
        os.unlink(path)  # while still locked, so no other process holds a lock on this file
        os.close(fd)
