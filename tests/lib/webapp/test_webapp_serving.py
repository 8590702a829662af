"""lib/webapp/serving.py and limits.py: the app's options and their checks."""
import argparse

import pytest

from lib.image_io import DEFAULT_MAX_PIXELS
from lib.webapp.limits import Limits, add_limit_args, limits_from_args
from lib.webapp.serving import add_serving_args, credentials, exposure_warning, is_local


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.3.2.1", True), ("localhost", True),
                                         ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                         ("192.168.1.5", False), ("myhost", False)])
def test_is_local(host, local):
    assert is_local(host) is local


def test_exposure_warning():
    assert exposure_warning("127.0.0.1", None) is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning.startswith("warning: --host 0.0.0.0 serves the app to other machines over plain HTTP")
    assert "add --auth USER:PASSWORD" in warning
    assert "--auth USER" not in exposure_warning("0.0.0.0", ("u", "p"))


def test_credentials():
    assert credentials("alice:pa:ss") == ("alice", "pa:ss")
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(argparse.ArgumentTypeError):
            credentials(bad)


def parser():
    parser = argparse.ArgumentParser()
    add_serving_args(parser)
    add_limit_args(parser)
    parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))
    return parser


def test_defaults_and_limits():
    args = parser().parse_args([])
    assert (args.host, args.port, args.auth) == ("127.0.0.1", 7860, None)
    assert limits_from_args(args) == Limits() and Limits().max_pixels == DEFAULT_MAX_PIXELS
    args = parser().parse_args(["--max-upload-mb", "2.5", "--max-video-seconds", "30", "--max-images", "3",
                                "--queue-size", "4", "--max-pixels", "0", "--port", "8080"])
    assert limits_from_args(args) == Limits(2.5, 30.0, 3, 4, 0) and Limits(2.5).max_upload_bytes == 2_500_000
    for bad in (["--max-upload-mb", "0"], ["--max-upload-mb", "nan"], ["--max-video-seconds", "inf"],
                ["--max-images", "0"], ["--queue-size", "1.5"], ["--max-pixels", "-1"], ["--port", "70000"]):
        with pytest.raises(ValueError):
            parser().parse_args(bad)


def test_describe():
    assert "179 megapixels per image" in Limits().describe()
    text = Limits(max_upload_mb=1, max_video_seconds=5, max_images=3, queue_size=4, max_pixels=0).describe()
    assert text == ("Files up to 1 MB each (a zip's images unpacked too), at most 3 images per request, no pixel "
                    "limit per image, videos up to 5 s; at most 4 requests wait in the queue. Uploads and results "
                    "are deleted from the server after 60 minutes and when it stops.")
