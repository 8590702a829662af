"""`make demo`'s download path: the official archive fetched over HTTP (redirects followed, resumed),
unpacked safely, verified by a strict load and recorded, against a local server on 127.0.0.1 serving
archives built here; `--archive`, `--sha256`, SSH_DATA_DIR and the integrity record checks."""
import hashlib
import io
import json
import tarfile

import pytest
import torch

from http_server import FileServer, Route
from lib.config import get_config
from lib.utils import download as dl
from lib.utils.download import DownloadError
from lib.utils.integrity import IntegrityError, record_path, write_record
from model import SSH
from model.weights.cli import main, parse_args
from model.weights.loading import load_imagenet_init, load_network
from model.weights.official import ensure_weights
from weights_fixtures import tar_gz, write_ssh_caffemodel


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """(SSH_models.tar.gz bytes, the SSH whose weights it holds)."""
    path = tmp_path_factory.mktemp("model") / "SSH.caffemodel"
    net = write_ssh_caffemodel(path)
    return tar_gz({"SSH_models/SSH.caffemodel": path.read_bytes()}), net


@pytest.fixture(scope="module")
def server(archive):
    with FileServer() as server:
        server.routes.update({
            "/short": Route(location="/SSH_models.tar.gz"),  # what bit.ly does
            "/SSH_models.tar.gz": Route(archive[0]),
            "/not_a_tar": Route(b"<html>not found</html>"),
            "/escape.tar.gz": Route(tar_gz({"../evil.txt": b"x"})),
            "/wrong_content.tar.gz": Route(tar_gz({"other/readme.txt": b"x"})),
        })
        yield server


def assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_fetch_follows_redirect_unpacks_loads_strictly_and_records(server, archive, tmp_path):
    path = ensure_weights("ssh", tmp_path, url=f"{server.url}/short")
    assert path == tmp_path / "SSH_models" / "SSH.caffemodel"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SSH_models"]  # archive removed
    assert sorted(p.name for p in path.parent.iterdir()) == ["SSH.caffemodel", "SSH.caffemodel.sha256.json"]
    loaded = SSH()
    loaded.load_caffemodel(path, strict=True)
    assert_same_weights(archive[1], loaded)
    record = json.loads(record_path(path).read_text())
    assert record["size"] == path.stat().st_size
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "strict load" in record["verified_by"] and record["verified_at"]
    assert record["remake"] == f"python3 -m model.weights ssh --data {tmp_path} --url {server.url}/short"


def test_recorded_file_is_checked_not_reloaded_and_damage_is_refused(server, tmp_path, monkeypatch):
    path = ensure_weights("ssh", tmp_path, url=f"{server.url}/SSH_models.tar.gz")
    with monkeypatch.context() as m:
        m.setattr(SSH, "load_caffemodel", lambda *a, **k: pytest.fail("a recorded file is not loaded again"))
        assert ensure_weights("ssh", tmp_path, url=f"{server.url}/gone") == path  # present: no download
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(data)
    advice = f"delete {path} and {record_path(path)} and run `python3 -m model.weights ssh --data {tmp_path}"
    for load in (lambda: ensure_weights("ssh", tmp_path), lambda: load_network(path)):
        with pytest.raises(IntegrityError, match=f"has SHA-256 {hashlib.sha256(data).hexdigest()} but its "
                                                 "integrity record") as e:
            load()
        assert advice in str(e.value)
    path.write_bytes(data[:1000])
    with pytest.raises(IntegrityError, match=f"is 1000 bytes but its integrity record {record_path(path)} says"):
        load_network(path)


def test_file_unpacked_by_hand_gets_a_record(archive, tmp_path):
    (tmp_path / "SSH_models").mkdir()
    archive_path = tmp_path / "SSH_models.tar.gz"
    archive_path.write_bytes(archive[0])
    dl.unpack(archive_path, tmp_path)
    path = tmp_path / "SSH_models" / "SSH.caffemodel"
    assert not record_path(path).exists()
    assert ensure_weights("ssh", tmp_path) == path
    assert json.loads(record_path(path).read_text())["size"] == path.stat().st_size


@pytest.mark.parametrize("route, message", [
    ("/not_a_tar", "not a valid archive, truncated or corrupt"),
    ("/escape.tar.gz", "refused, member '../evil.txt' has a '..' component"),
    ("/wrong_content.tar.gz", "did not contain SSH_models/SSH.caffemodel"),
    ("/missing", "could not download .*: HTTP 404"),
])
def test_bad_downloads_leave_nothing_partial(server, tmp_path, route, message):
    with pytest.raises(DownloadError, match=message):
        ensure_weights("ssh", tmp_path / "data", url=server.url + route)
    assert not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "data").glob("**/*.caffemodel"))
    assert not list((tmp_path / "data").glob(".*")) and not list((tmp_path / "data").glob("*.part"))


def test_truncated_download_is_resumed_by_the_next_run(server, archive, tmp_path, sleeps):
    server.routes["/cut.tar.gz"] = Route(archive[0], cut_after=len(archive[0]) // 3)
    with pytest.raises(DownloadError) as e:
        ensure_weights("ssh", tmp_path, url=f"{server.url}/cut.tar.gz", retries=0)
    part = tmp_path / "SSH_models.tar.gz.part"
    assert f"kept in {part}: run `python3 -m model.weights ssh --data {tmp_path} --url {server.url}/cut.tar.gz` " \
           "again to resume" in str(e.value)
    assert part.stat().st_size == len(archive[0]) // 3
    server.routes["/cut.tar.gz"].cut_after = None
    server.routes["/cut-short"] = Route(location="/cut.tar.gz")  # the Range header survives a redirect
    sha = hashlib.sha256(archive[0]).hexdigest()
    assert main(["ssh", "--data", str(tmp_path), "--url", f"{server.url}/cut-short", "--sha256", sha]) == 0
    assert [r for p, r in server.requests if p == "/cut.tar.gz"][-1] == f"bytes={len(archive[0]) // 3}-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SSH_models"]


def test_cli_says_in_one_line_what_was_installed_and_that_it_is_already_installed(archive, tmp_path, capsys):
    path = tmp_path / "SSH_models.tar.gz"
    path.write_bytes(archive[0])
    data = tmp_path / "data"
    model = data / "SSH_models" / "SSH.caffemodel"
    assert main(["ssh", "--data", str(data), "--archive", str(path)]) == 0
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    out = capsys.readouterr().out
    assert out == (f"{model}: installed and verified (strict load into SSH: 38 layers, 75 tensors; "
                   f"SHA-256 {sha[:12]}…)\n")
    assert main(["ssh", "--data", str(data)]) == 0
    assert capsys.readouterr().out == (f"{model}: already installed and verified (size and SHA-256 {sha[:12]}… "
                                       f"match {record_path(model)})\n")


def test_cli_refuses_an_archive_with_an_absolute_member_and_installs_nothing(archive, tmp_path, capsys):
    """A valid archive plus one member at an absolute path: refused whole, nothing written anywhere."""
    evil = tmp_path / "evil_abs"
    hostile = tmp_path / "SSH_models.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(archive[0])) as good, tarfile.open(hostile, "w:gz") as out:
        for member in good.getmembers():
            out.addfile(member, good.extractfile(member))
        info = tarfile.TarInfo(str(evil))
        info.size = 1
        out.addfile(info, io.BytesIO(b"x"))
    data = tmp_path / "data"
    assert main(["ssh", "--data", str(data), "--archive", str(hostile)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"error: {hostile}: refused, member '{evil}' is an absolute path (only regular files and "
                            "folders at relative paths are unpacked), so nothing was unpacked; delete "
                            f"{hostile} and download it again\n")
    assert not data.exists() and not evil.exists()


def test_cli_archive_and_sha256(archive, tmp_path, capsys):
    path = tmp_path / "SSH_models.tar.gz"
    path.write_bytes(archive[0])
    data = tmp_path / "data"
    assert main(["ssh", "--data", str(data), "--archive", str(path), "--sha256", "ab" * 32]) == 2
    sha = hashlib.sha256(archive[0]).hexdigest()
    assert f"{path} has SHA-256 {sha}, expected {'ab' * 32}" in capsys.readouterr().err
    assert not (data / "SSH_models").exists()
    assert main(["ssh", "--data", str(data), "--archive", str(path), "--sha256", sha.upper()]) == 0
    assert record_path(data / "SSH_models" / "SSH.caffemodel").is_file() and path.is_file()
    with pytest.raises(SystemExit):
        parse_args(["ssh", "--sha256", "xyz"])
    with pytest.raises(SystemExit):
        parse_args(["ssh", "--url", "http://x", "--archive", str(path)])


def test_data_dir_from_environment_and_data_overrides_it(archive, tmp_path, monkeypatch):
    path = tmp_path / "SSH_models.tar.gz"
    path.write_bytes(archive[0])
    monkeypatch.setenv("SSH_DATA_DIR", str(tmp_path / "cache"))
    assert get_config().DATA_DIR == str(tmp_path / "cache")
    assert parse_args(["imagenet", "--url", "http://x/a.tar.gz"]).data == tmp_path / "cache"
    assert main(["ssh", "--archive", str(path)]) == 0
    assert (tmp_path / "cache" / "SSH_models" / "SSH.caffemodel").is_file()
    assert main(["ssh", "--archive", str(path), "--data", str(tmp_path / "other")]) == 0
    assert (tmp_path / "other" / "SSH_models" / "SSH.caffemodel").is_file()
    monkeypatch.delenv("SSH_DATA_DIR")
    assert get_config().DATA_DIR == "data" and str(parse_args(["ssh"]).data) == "data"


def test_cli_without_network_says_what_to_do(tmp_path, capsys, sleeps):
    # port 9 on 127.0.0.1 (discard) is closed here: the same failure as having no network
    assert main(["ssh", "--data", str(tmp_path), "--url", "http://127.0.0.1:9/SSH_models.tar.gz"]) == 2
    err = capsys.readouterr().err
    assert "could not download http://127.0.0.1:9/SSH_models.tar.gz (" in err and "in 4 attempts" in err
    assert err.endswith(
        "in 4 attempts. Without network access here: on a machine that has it, download "
        "http://127.0.0.1:9/SSH_models.tar.gz (the file is SSH_models.tar.gz), copy that file to this machine, e.g. "
        f"into the current folder, and run `python3 -m model.weights ssh --data {tmp_path} --archive "
        f"SSH_models.tar.gz`, which unpacks, verifies and records {tmp_path}/SSH_models/SSH.caffemodel\n")
    assert sleeps == [1.0, 2.0, 4.0]


def test_imagenet_init_checks_the_record(tmp_path):
    path = tmp_path / "VGG16.caffemodel"
    path.write_bytes(b"\0" * 1000)
    write_record(path, verified_by="test", remake="python3 -m model.weights imagenet")
    path.write_bytes(b"\1" + b"\0" * 999)
    with pytest.raises(IntegrityError, match="run `python3 -m model.weights imagenet` to get it again"):
        load_imagenet_init(SSH(), path)
