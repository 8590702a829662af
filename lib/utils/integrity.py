"""Integrity records of weight files: `<file>.sha256.json` beside the file, written once the file was
verified (e.g. by a strict load), checked on every later use.

A record is a small JSON object (JSON rather than a `sha256sum` line because it also says how the
file was verified, when, and which command makes it again):

    {"file": "SSH.caffemodel", "size": 79075943, "sha256": "<64 hex digits>",
     "verified_by": "strict load into SSH (python3 -m model.weights ssh)",
     "verified_at": "2026-11-29T23:59:00Z", "remake": "python3 -m model.weights ssh --data data"}

The check compares the size first (one stat, catches truncation) and then the SHA-256 (about
0.05 s for the 79 MB SSH.caffemodel on a CPU with SHA instructions).
"""
import json
import time
from pathlib import Path

from .atomic import atomic_write_text
from .download import sha256_file

SUFFIX = ".sha256.json"


class IntegrityError(ValueError):
    """A file does not match its integrity record, or the record is unreadable."""


def record_path(path):
    """The record of the file at `path`: `<path>.sha256.json`."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_record(path, verified_by, remake):
    """Record the size and SHA-256 of the file at `path` (atomically); returns the record's path.

    verified_by: how the file was verified; remake: the command that makes the file again.
    """
    path = Path(path)
    record = {"file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path),
              "verified_by": verified_by, "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "remake": remake}
    target = record_path(path)
    atomic_write_text(target, json.dumps(record, indent=1) + "\n")
    return target


def read_record(path):
    """The record of the file at `path` as a dict, or None when it has none."""
    target = record_path(path)
    if not target.is_file():
        return None
    try:
        record = json.loads(target.read_text())
    except (ValueError, OSError):
        record = None
    if not (isinstance(record, dict) and isinstance(record.get("size"), int) and isinstance(record.get("sha256"), str)):
        raise IntegrityError(f"{target} is not a readable integrity record (JSON with size and sha256): delete it, "
                             f"the file {path} gets a new one when it is next verified")
    return record


def check_record(path):
    """Raise IntegrityError when the file at `path` differs from its record (size, then SHA-256).

    Returns the record, or None when the file has none (nothing to check).
    """
    path = Path(path)
    record = read_record(path)
    if record is None:
        return None
    target = record_path(path)
    remake = record.get("remake") or "the command that made it"
    advice = f"delete {path} and {target} and run `{remake}` to get it again"
    size = path.stat().st_size
    if size != record["size"]:
        raise IntegrityError(f"{path} is {size} bytes but its integrity record {target} says {record['size']} "
                             f"(truncated or replaced): {advice}")
    digest = sha256_file(path)
    if digest != record["sha256"]:
        raise IntegrityError(f"{path} has SHA-256 {digest} but its integrity record {target} says "
                             f"{record['sha256']} (damaged or replaced): {advice}")
    return record
