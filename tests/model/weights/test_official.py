"""`make demo`'s download path: the official archive fetched over HTTP (redirects followed), unpacked
safely and verified by a strict load, against a local server on 127.0.0.1 serving archives built here."""
import http.server
import io
import tarfile
import threading

import pytest
import torch

from lib.utils.download import DownloadError
from model import SSH
from model.weights.caffemodel import write_caffemodel
from model.weights.official import ensure_weights, main


def caffemodel_bytes(tmp_path):
    """An SSH.caffemodel (official layer names) holding the weights of a seeded random SSH."""
    torch.manual_seed(0)
    net = SSH()
    layers = [(spec.caffe_name, "Deconvolution" if spec.init == "bilinear" else "Convolution",
               [p.detach() for p in layer.parameters()]) for spec, layer in net.caffe_layers()]
    path = tmp_path / "SSH.caffemodel"
    write_caffemodel(path, layers)
    return path.read_bytes(), net


def tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model, net = caffemodel_bytes(tmp_path_factory.mktemp("model"))
    routes = {
        "/SSH_models.tar.gz": tar_gz({"SSH_models/SSH.caffemodel": model}),
        "/not_a_tar": b"<html>not found</html>",
        "/escape.tar.gz": tar_gz({"../evil.txt": b"x"}),
        "/wrong_content.tar.gz": tar_gz({"other/readme.txt": b"x"}),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/short":  # what bit.ly does
                self.send_response(302)
                self.send_header("Location", "/SSH_models.tar.gz")
                self.end_headers()
                return
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", net
    httpd.shutdown()


def test_fetch_follows_redirect_unpacks_and_loads_strictly(server, tmp_path):
    url, net = server
    path = ensure_weights("ssh", tmp_path, url=f"{url}/short")
    assert path == tmp_path / "SSH_models" / "SSH.caffemodel"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SSH_models"]  # archive removed
    loaded = SSH()
    loaded.load_caffemodel(path, strict=True)
    for a, b in zip(net.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    assert ensure_weights("ssh", tmp_path, url=f"{url}/gone") == path  # present: no download


@pytest.mark.parametrize("route, message", [
    ("/not_a_tar", "not a valid archive"),
    ("/escape.tar.gz", "not a valid archive"),
    ("/wrong_content.tar.gz", "did not contain SSH_models/SSH.caffemodel"),
    ("/missing", "could not download"),
])
def test_bad_downloads_leave_nothing_partial(server, tmp_path, route, message):
    url, _ = server
    with pytest.raises(DownloadError, match=message):
        ensure_weights("ssh", tmp_path / "data", url=url + route)
    assert not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "data").glob("**/*.caffemodel"))
    assert not list((tmp_path / "data").glob(".*"))


def test_cli_without_network_says_what_to_do(tmp_path, capsys):
    # port 9 on 127.0.0.1 (discard) is closed here: the same failure as having no network
    assert main(["ssh", "--data", str(tmp_path), "--url", "http://127.0.0.1:9/SSH_models.tar.gz"]) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "unpack it into" in err and "SSH_models/SSH.caffemodel" in err
