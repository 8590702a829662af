"""lib/utils/download.py against a local server (tests/http_server.py) that cuts connections, ignores
Range, stalls and fails: resumed files are byte-identical, a short body is never complete, hashes
are checked, 404 is not retried, a truncated archive leaves nothing half-unpacked, and an archive
with any member but regular files and folders inside the target is refused before anything is written."""
import errno
import hashlib
import io
import os
import tarfile

import pytest

from http_server import FileServer, Route
from lib.utils.download import DownloadError, download, fetch_archive, part_path, unpack, unpack_file
from weights_fixtures import tar_gz

MB = 1 << 20
BODY = os.urandom(3 * MB + 12345)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    with FileServer() as server:
        yield server


def ranges(server, path="/f"):
    return [r for p, r in server.requests if p == path]


def test_download_checks_hash_and_shows_size_and_speed(server, tmp_path, capsys):
    server.routes["/f"] = Route(BODY)
    assert download(server.url + "/f", tmp_path / "f.bin", sha256=SHA) == len(BODY)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert not part_path(tmp_path / "f.bin").exists()
    err = capsys.readouterr().err
    assert "f.bin" in err and "3.01M/3.01M" in err and "B/s" in err


def test_cut_connection_is_resumed_with_range(server, tmp_path, sleeps, capsys):
    server.routes["/f"] = Route(BODY, cut_after=MB, cuts=2)
    download(server.url + "/f", tmp_path / "f.bin", retries=3, backoff=0)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert ranges(server) == [None, f"bytes={MB}-", f"bytes={2 * MB}-"]
    assert sleeps == [0, 0]
    assert "after 1048576 of 3158073 bytes; retrying" in capsys.readouterr().err


def test_short_body_is_never_complete_and_the_part_is_resumed_later(server, tmp_path, sleeps, capsys):
    url, dest = server.url + "/f", tmp_path / "f.bin"
    server.routes["/f"] = Route(BODY, cut_after=MB)
    with pytest.raises(DownloadError) as e:
        download(url, dest, retries=1, backoff=0, rerun="`make demo`")
    part = part_path(dest)
    assert str(e.value) == (f"could not download {url} (the connection closed after {2 * MB} of {len(BODY)} bytes) "
                            f"in 2 attempts; got {2 * MB} of {len(BODY)} bytes, kept in {part}: run `make demo` "
                            "again to resume")
    assert not dest.exists() and part.read_bytes() == BODY[:2 * MB]
    server.routes["/f"] = Route(BODY)
    capsys.readouterr()
    download(url, dest, sha256=SHA)
    assert dest.read_bytes() == BODY and not part.exists()
    assert ranges(server)[-1] == f"bytes={2 * MB}-"
    err = capsys.readouterr().err
    assert f"resuming the partial download {part} at {2 * MB} bytes" in err and "3.01M/3.01M" in err


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, capsys):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"x" * MB)  # not a prefix of BODY: appending would corrupt the file
    server.routes["/f"] = Route(BODY, ignore_range=True)
    download(server.url + "/f", dest, sha256=SHA)
    assert dest.read_bytes() == BODY
    assert ranges(server) == [f"bytes={MB}-"]
    assert "ignores Range requests" in capsys.readouterr().err


def test_416_with_a_complete_part_finishes_without_downloading(server, tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY)
    server.routes["/f"] = Route(BODY)
    download(server.url + "/f", dest, sha256=SHA)
    assert dest.read_bytes() == BODY and ranges(server) == [f"bytes={len(BODY)}-"]


def test_416_with_a_stale_longer_part_starts_again(server, tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY + b"old tail")
    server.routes["/f"] = Route(BODY)
    download(server.url + "/f", dest)
    assert dest.read_bytes() == BODY and ranges(server) == [f"bytes={len(BODY) + 8}-", None]


def test_corrupt_byte_fails_the_hash_and_deletes_the_part(server, tmp_path):
    bad = bytearray(BODY)
    bad[len(bad) // 2] ^= 1
    server.routes["/f"] = Route(bytes(bad))
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=f"has SHA-256 {hashlib.sha256(bad).hexdigest()}, expected {SHA}; "
                                            f"the partial file {part_path(dest)} was deleted"):
        download(server.url + "/f", dest, sha256=SHA.upper())
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once(server, tmp_path, sleeps):
    with pytest.raises(DownloadError, match=f"could not download {server.url}/gone: HTTP 404"):
        download(server.url + "/gone", tmp_path / "f.bin", retries=5)
    assert len(server.requests) == 1 and sleeps == []
    assert list(tmp_path.iterdir()) == []


def test_503_is_retried_with_exponential_backoff(server, tmp_path, sleeps):
    server.routes["/f"] = Route(BODY, fail=3, status=503)
    download(server.url + "/f", tmp_path / "f.bin", retries=3, backoff=0.5)
    assert sleeps == [0.5, 1.0, 2.0] and len(server.requests) == 4
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_retries_run_out(server, tmp_path, sleeps):
    server.routes["/f"] = Route(BODY, fail=9, status=503)
    with pytest.raises(DownloadError, match="HTTP 503"):
        download(server.url + "/f", tmp_path / "f.bin", retries=2, backoff=0)
    assert len(server.requests) == 3 and sleeps == [0, 0]


def test_timeout_is_retried(server, tmp_path, sleeps):
    server.routes["/f"] = Route(BODY, stall=1.0)
    download(server.url + "/f", tmp_path / "f.bin", timeout=0.3, retries=1, backoff=0)
    assert (tmp_path / "f.bin").read_bytes() == BODY and len(server.requests) == 2


ARCHIVE = tar_gz({"SSH_models/SSH.caffemodel": BODY})


def test_truncated_archive_is_deleted_and_nothing_is_unpacked(server, tmp_path):
    server.routes["/a.tar.gz"] = Route(ARCHIVE[:len(ARCHIVE) // 2])
    with pytest.raises(DownloadError, match=r"a\.tar\.gz: not a valid archive, truncated or corrupt .*; it was "
                                            r"deleted: run `python3 -m model.weights ssh` again"):
        fetch_archive(server.url + "/a.tar.gz", tmp_path, "a.tar.gz", rerun="`python3 -m model.weights ssh`")
    assert list(tmp_path.iterdir()) == []


def test_archive_from_elsewhere_is_hash_checked_and_kept(tmp_path):
    archive = tmp_path / "SSH_models.tar.gz"
    archive.write_bytes(ARCHIVE)
    data = tmp_path / "data"
    (data / "SSH_models").mkdir(parents=True)
    (data / "SSH_models" / "SSH.pth").write_bytes(b"mine")
    with pytest.raises(DownloadError, match="has SHA-256 .*, expected 0{64}: it is damaged"):
        unpack_file(archive, data, sha256="0" * 64)
    assert unpack_file(archive, data, sha256=hashlib.sha256(ARCHIVE).hexdigest()) == ["SSH_models"]
    assert (data / "SSH_models" / "SSH.caffemodel").read_bytes() == BODY
    assert (data / "SSH_models" / "SSH.pth").read_bytes() == b"mine"  # other files are kept
    assert archive.is_file()


def test_truncated_archive_from_elsewhere_says_what_to_delete(tmp_path):
    archive = tmp_path / "SSH_models.tar.gz"
    archive.write_bytes(ARCHIVE[:-1000])
    with pytest.raises(DownloadError, match=f"truncated or corrupt .*; delete {archive} and download it again"):
        unpack_file(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()  # the whole archive is read before anything is written


def special_tar_gz(members):
    """Bytes of a .tar.gz of (TarInfo keyword arguments, file bytes or None) pairs, in that order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


GOOD = [({"name": "SSH_models", "type": tarfile.DIRTYPE}, None), ({"name": "SSH_models/SSH.caffemodel"}, BODY[:1000])]
# (member, what the error says about it); each comes after GOOD, so a valid archive carries it.
UNSAFE = [
    ({"name": "{tmp}/evil_abs"}, "is an absolute path"),
    ({"name": "../evil.txt"}, "has a '..' component"),
    ({"name": "SSH_models/../../evil.txt"}, "has a '..' component"),
    ({"name": "SSH_models/link", "type": tarfile.SYMTYPE, "linkname": "{tmp}/evil_abs"},
     "is a symbolic link (to '{tmp}/evil_abs')"),
    ({"name": "SSH_models/inside", "type": tarfile.SYMTYPE, "linkname": "SSH.caffemodel"},
     "is a symbolic link (to 'SSH.caffemodel')"),
    ({"name": "SSH_models/hard", "type": tarfile.LNKTYPE, "linkname": "SSH_models/SSH.caffemodel"},
     "is a hard link (to 'SSH_models/SSH.caffemodel')"),
    ({"name": "SSH_models/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "is a device file"),
    ({"name": "SSH_models/disk", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, "is a device file"),
    ({"name": "SSH_models/pipe", "type": tarfile.FIFOTYPE}, "is a FIFO"),
]


def hostile_archive(tmp_path, member):
    fields = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in member.items()}
    return special_tar_gz([*((dict(f), d) for f, d in GOOD), (fields, b"x" if "type" not in fields else None)])


@pytest.mark.parametrize("member, why", UNSAFE, ids=["absolute", "dotdot", "dotdot-inside", "symlink-out",
                                                       "symlink-in", "hardlink", "char-device", "block-device", "fifo"])
def test_archive_with_any_unsafe_member_is_refused_whole_before_anything_is_written(tmp_path, member, why):
    archive = tmp_path / "SSH_models.tar.gz"
    archive.write_bytes(hostile_archive(tmp_path, member))
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as e:
        unpack_file(archive, data)
    name = member["name"].format(tmp=tmp_path)
    assert str(e.value) == (f"{archive}: refused, member '{name}' {why.format(tmp=tmp_path)} (only regular files and "
                            "folders at relative paths are unpacked), so nothing was unpacked; delete "
                            f"{archive} and download it again")
    assert not data.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SSH_models.tar.gz"]


def test_refused_archive_leaves_the_installed_files_as_they_were(tmp_path):
    data = tmp_path / "data"
    (data / "SSH_models").mkdir(parents=True)
    (data / "SSH_models" / "SSH.caffemodel").write_bytes(b"installed")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(special_tar_gz([*((dict(f), d) for f, d in GOOD), ({"name": "/evil"}, b"x"),
                                        ({"name": "SSH_models/x", "type": tarfile.FIFOTYPE}, None)]))
    with pytest.raises(DownloadError, match=r"member '/evil' is an absolute path \(and 1 more unsafe members\)"):
        unpack(archive, data)
    assert [p.relative_to(data).as_posix() for p in sorted(data.rglob("*"))] == ["SSH_models",
                                                                                 "SSH_models/SSH.caffemodel"]
    assert (data / "SSH_models" / "SSH.caffemodel").read_bytes() == b"installed"


def test_a_file_where_a_folder_is_installed_is_refused_and_nothing_changes(tmp_path):
    data = tmp_path / "data"
    (data / "SSH_models" / "SSH.caffemodel").mkdir(parents=True)  # e.g. a folder of the user's
    (data / "other.txt").write_bytes(b"mine")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz({"other.txt": b"theirs", "SSH_models/SSH.caffemodel": BODY[:10]}))
    with pytest.raises(DownloadError, match=f"{data}/SSH_models/SSH.caffemodel is a folder where the archive has a "
                                            "file; nothing was changed"):
        unpack(archive, data)
    assert (data / "other.txt").read_bytes() == b"mine" and (data / "SSH_models" / "SSH.caffemodel").is_dir()
    assert sorted(p.name for p in data.iterdir()) == ["SSH_models", "other.txt"]


def test_downloaded_archive_with_an_absolute_member_is_refused_and_deleted(server, tmp_path):
    server.routes["/a.tar.gz"] = Route(hostile_archive(tmp_path, {"name": "{tmp}/evil_abs"}))
    data = tmp_path / "data"
    with pytest.raises(DownloadError, match=f"member '{tmp_path}/evil_abs' is an absolute path .*, so nothing was "
                                            "unpacked; it was deleted: run `again` again"):
        fetch_archive(server.url + "/a.tar.gz", data, "a.tar.gz", rerun="`again`")
    assert list(data.iterdir()) == [] and not (tmp_path / "evil_abs").exists()


def test_unpack_moves_files_across_file_systems_with_a_copy(tmp_path, monkeypatch):
    """A folder of DATA_DIR may be a symlink to another disk, where a rename fails with EXDEV."""
    replace = os.replace

    def cross_device(source, target):
        if ".unpack" in str(source):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(os, "replace", cross_device)
    assert unpack_file_bytes(tmp_path, ARCHIVE) == ["SSH_models"]
    assert (tmp_path / "data" / "SSH_models" / "SSH.caffemodel").read_bytes() == BODY
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["SSH_models"]


def unpack_file_bytes(tmp_path, data):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    return unpack_file(archive, tmp_path / "data")
