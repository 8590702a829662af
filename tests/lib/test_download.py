"""lib/utils/download.py against a local server (tests/http_server.py) that cuts connections, ignores
Range, stalls and fails: resumed files are byte-identical, a short body is never complete, hashes
are checked, 404 is not retried, and a truncated archive leaves nothing half-unpacked."""
import hashlib
import os

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
    assert list((tmp_path / "data").iterdir()) == []


def test_unpack_refuses_members_outside(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_gz({"../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="not a valid archive"):
        unpack(archive, tmp_path / "data")
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "data").iterdir()) == []
