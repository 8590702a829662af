"""Download a .tar.gz archive (following redirects) and unpack it safely, leaving nothing partial."""
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    """The archive could not be fetched or unpacked; the message says why and what to do."""


def download(url, dest, timeout=60, chunk=1 << 20):
    """Stream `url` to the file `dest` (atomic: a temp file renamed at the end); returns its size."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "ssh-pytorch"})
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, chunk)
        size = os.path.getsize(tmp)
        os.replace(tmp, dest)
        return size
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def unpack(archive, dest_dir):
    """Extract the tar archive into `dest_dir`, refusing members that would land outside it.

    Members are first extracted into a temporary folder beside `dest_dir` and then moved in, so an
    archive that fails half-way leaves `dest_dir` untouched. Returns the top-level names moved.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".unpack"))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DownloadError(f"{archive}: not a valid archive ({e})") from e
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            target = dest_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_archive(url, dest_dir, timeout=60):
    """Download the archive at `url` and unpack it into `dest_dir`; the archive itself is deleted."""
    dest_dir = Path(dest_dir)
    archive = dest_dir / ".download.tar.gz"
    try:
        download(url, archive, timeout)
        return unpack(archive, dest_dir)
    finally:
        if archive.exists():
            archive.unlink()
