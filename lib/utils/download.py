"""Download a file that can be trusted (resumed, retried, size- and hash-checked) and unpack a
.tar.gz archive safely, leaving nothing half-unpacked.

The progress bar and read size are torch.hub's (`torch.hub.tqdm`, `READ_DATA_CHUNK`), but not its
`download_url_to_file`: that one writes to a new random temp file on every call and deletes it on
failure (nothing to resume), sends no `Range` request, never retries, and accepts a body shorter
than its Content-Length as complete (urllib does not raise on a connection closed early). A
large archive over a flaky link needs all four, so `download` does them here:

- the partial file is the fixed `<dest>.part`, kept on failure; the next call asks for the rest
  with `Range: bytes=N-`: a 206 answer is appended, a 200 answer (the server ignores Range) starts
  again from zero, a 416 answer means the part is already complete (or, if its size disagrees with
  the server's, that it is stale: it is dropped and the download starts again);
- network errors, timeouts, cut connections and 408/429/5xx answers are retried with exponential
  backoff (`backoff` * 1, 2, 4, ... seconds); other HTTP errors (404, 403, ...) fail at once;
- the total from Content-Length / Content-Range must be reached, so a short body is never complete;
- an optional expected SHA-256 is checked on the whole file; a mismatch deletes the partial file.
"""
import contextlib
import errno
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from torch.hub import READ_DATA_CHUNK, tqdm

from .atomic import atomic_path

# Default number of retries after the first attempt, and the first backoff in seconds.
RETRIES = 3
BACKOFF = 1.0
# HTTP statuses worth retrying: the server is busy or failing, the resource is there.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


class DownloadError(RuntimeError):
    """The file could not be fetched or unpacked; the message says why and what to do."""


class _Retry(Exception):
    """A failure that another attempt may not have: network error, timeout, cut connection."""


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest):
    """The partial file of a download to `dest`: `<dest>.part`, kept between attempts."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _size(path):
    return path.stat().st_size if path.exists() else 0


def _content_range(resp):
    """(first byte, total) of a Content-Range header; None for a part of them that is absent or '*'."""
    match = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _open(url, part, timeout):
    """(response, total size or None) for the rest of `url` after the bytes already in `part`.

    The part is emptied when the server sends the whole file (200) and dropped when its 416 says the
    part does not fit; the response is None when the part is already complete.
    """
    have = _size(part)
    headers = {"User-Agent": "ssh-pytorch"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        _, total = _content_range(e)
        e.close()
        if total == have:
            return None, total
        part.unlink()  # stale part, e.g. from another version of the file: start again
        return _open(url, part, timeout)
    if resp.status == 206:
        first, total = _content_range(resp)
        if first == have:
            return resp, total
        resp.close()
        part.unlink()
        raise _Retry(f"the server resumed at byte {first} instead of {have}")
    length = resp.headers.get("Content-Length")
    if have:
        print(f"{url}: the server ignores Range requests, downloading again from the start", file=sys.stderr)
    part.write_bytes(b"")
    return resp, int(length) if length and length.isdigit() else None


def _receive(resp, total, part, bar):
    """Append the body of `resp` (None: nothing left) to `part`, checking it reaches `total` bytes."""
    bar.reset(total)
    bar.update(_size(part))
    if resp is None:
        return
    with resp, open(part, "ab") as out:
        while block := resp.read(READ_DATA_CHUNK):
            out.write(block)
            bar.update(len(block))
    have = _size(part)
    if total is not None and have < total:
        raise _Retry(f"the connection closed after {have} of {total} bytes")
    if total is not None and have > total:
        part.unlink()
        raise _Retry(f"the server sent {have} bytes for a file of {total}")


def download(url, dest, sha256=None, timeout=60, retries=RETRIES, backoff=BACKOFF, progress=True,
             rerun="the same command"):
    """Download `url` to the file `dest` (resuming `<dest>.part`); returns its size in bytes.

    sha256: expected hex digest of the whole file, or None. rerun: the command a user runs to resume,
    named in the error messages. The file appears at `dest` only when complete and checked. The
    progress bar (stderr) appears with the first answer.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    if part.exists():
        print(f"{url}: resuming the partial download {part} at {_size(part)} bytes", file=sys.stderr)
    total = bar = None
    with contextlib.ExitStack() as stack:
        for attempt in range(retries + 1):
            try:
                resp, total = _open(url, part, timeout)
                if bar is None:
                    bar = stack.enter_context(tqdm(total=total, disable=not progress, unit="B", unit_scale=True,
                                                   unit_divisor=1024, desc=dest.name, file=sys.stderr))
                _receive(resp, total, part, bar)
                break
            except urllib.error.HTTPError as e:
                if e.code not in RETRY_STATUSES or attempt == retries:
                    raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}"
                                        f"{_kept(part, total, rerun)}") from e
                reason = f"HTTP {e.code} {e.reason}"
            except (_Retry, urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = str(getattr(e, "reason", None) or e)
                if attempt == retries:
                    raise DownloadError(f"could not download {url} ({reason}) in {retries + 1} attempts"
                                        f"{_kept(part, total, rerun)}") from e
            wait = backoff * 2 ** attempt
            tqdm.write(f"{url}: {reason}; retrying in {wait:g} s", file=sys.stderr)
            time.sleep(wait)
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: the downloaded file has SHA-256 {got}, expected {sha256.lower()}; the "
                                f"partial file {part} was deleted: check the expected hash, then run {rerun} again")
    os.replace(part, dest)
    return dest.stat().st_size


def _kept(part, total, rerun):
    """The end of an error message: bytes kept in the partial file and how to resume."""
    if not part.exists() or not _size(part):
        return ""
    of = f" of {total}" if total is not None else ""
    return f"; got {_size(part)}{of} bytes, kept in {part}: run {rerun} again to resume"


# tarfile's "data" filter (Python 3.12, 3.11.4+): a second line of defence behind `unsafe_member`.
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def unsafe_member(member):
    """Why the tar member `member` (tarfile.TarInfo) may not be unpacked, or None when it is a regular
    file or a folder at a relative path without `..`: links, devices, FIFOs, absolute paths and `..`
    components could write outside the target folder or plant something other than data there."""
    name = member.name
    if not name or "\0" in name:
        return "has an empty or invalid name"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts:
        return "has a '..' component"
    if member.issym():
        return f"is a symbolic link (to '{member.linkname}')"
    if member.islnk():
        return f"is a hard link (to '{member.linkname}')"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isfile() or member.isdir()):
        return f"is not a regular file or folder (tar type {member.type!r})"
    return None


def _conflict(staged, target):
    """Why moving the unpacked `staged` (file or folder) to `target` would lose data, or None."""
    if staged.is_dir() and target.exists() and not target.is_dir():
        return f"{target} is a file where the archive has a folder"
    if not staged.is_dir() and target.is_dir():
        return f"{target} is a folder where the archive has a file"
    return None


def unpack(archive, dest_dir, on_error="delete it"):
    """Extract the tar archive into `dest_dir`, all or nothing; returns the top-level names moved.

    The whole member list is read and checked first (`unsafe_member`): an archive with any member
    that is not a regular file or folder at a relative path inside `dest_dir` is refused whole,
    naming that member, before anything is written. The members are then extracted into a
    temporary folder beside `dest_dir` and moved in file by file (replacing files of the same name,
    keeping other files such as a converted SSH.pth), so an archive that fails half-way (truncated,
    corrupt) leaves `dest_dir` untouched. Failures raise DownloadError naming the archive and
    `on_error`, what was done or is to do about it.
    """
    dest_dir = Path(dest_dir)
    with contextlib.ExitStack() as stack:
        try:
            tar = stack.enter_context(tarfile.open(archive))
            members = tar.getmembers()  # reads the whole archive: a truncated one fails here
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DownloadError(f"{archive}: not a valid archive, truncated or corrupt ({e}); {on_error}") from e
        bad = [(m.name, why) for m in members if (why := unsafe_member(m)) is not None]
        if bad:
            more = f" (and {len(bad) - 1} more unsafe members)" if len(bad) > 1 else ""
            raise DownloadError(f"{archive}: refused, member '{bad[0][0]}' {bad[0][1]}{more} (only regular files "
                                f"and folders at relative paths are unpacked), so nothing was unpacked; {on_error}")
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".unpack"))
            stack.callback(shutil.rmtree, staging, ignore_errors=True)
            tar.extractall(staging, members=members, **_DATA_FILTER)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DownloadError(f"{archive}: not a valid archive, truncated or corrupt ({e}); {on_error}") from e
        except OSError as e:
            raise DownloadError(f"{archive}: could not be unpacked into {dest_dir} ({e}); nothing was changed") from e
        try:
            return _move_in(staging, dest_dir, archive)
        except OSError as e:
            raise DownloadError(f"{archive}: moving the unpacked files into {dest_dir} failed ({e}); run again "
                                "once that is fixed") from e


def _move_in(staging, dest_dir, archive):
    """Move the unpacked tree `staging` into `dest_dir`, after checking that no file or folder there
    would be lost (a folder where the archive has a file, or the reverse); returns the top-level names."""
    staged = sorted(staging.rglob("*"))
    for member in staged:
        why = _conflict(member, dest_dir / member.relative_to(staging))
        if why is not None:
            raise DownloadError(f"{archive}: not unpacked, {why}; nothing was changed: move it away and run again")
    for member in staged:
        target = dest_dir / member.relative_to(staging)
        if member.is_dir():
            target.mkdir(exist_ok=True)
        else:
            _place(member, target)
    return sorted(p.name for p in staging.iterdir())


def _place(source, target):
    """Move the file `source` to `target`, replacing it: a rename, or where `target` lies on another
    file system (a folder of DATA_DIR that is a symlink to another disk), a copy renamed into place."""
    try:
        os.replace(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def unpack_file(archive, dest_dir, sha256=None):
    """Unpack an archive the user downloaded (e.g. on another machine) into `dest_dir`, after checking
    its SHA-256 when `sha256` is given; the archive itself is left where it is."""
    archive = Path(archive)
    if not archive.is_file():
        raise DownloadError(f"archive {archive} not found: give the path of the downloaded .tar.gz")
    if sha256 is not None:
        got = sha256_file(archive)
        if got != sha256.lower():
            raise DownloadError(f"{archive} has SHA-256 {got}, expected {sha256.lower()}: it is damaged or "
                                "another file; download it again")
    return unpack(archive, dest_dir, on_error=f"delete {archive} and download it again")


def fetch_archive(url, dest_dir, name, sha256=None, timeout=60, retries=RETRIES, backoff=BACKOFF,
                  rerun="the same command"):
    """Download the archive at `url` to `dest_dir`/`name` (resumable, see `download`), unpack it into
    `dest_dir` and delete it; a truncated or corrupt archive is deleted too."""
    archive = Path(dest_dir) / name
    download(url, archive, sha256, timeout, retries, backoff, rerun=rerun)
    try:
        return unpack(archive, dest_dir, on_error=f"it was deleted: run {rerun} again to download it anew")
    finally:
        archive.unlink()
