"""lib/utils/redact.py: no credential of a stream URL in messages, names or native chatter."""
import pytest

from lib.utils.redact import Redactor, public_url


@pytest.mark.parametrize("url, public", [
    ("rtsp://admin:pw@10.0.0.2:554/h264", "rtsp://10.0.0.2:554/h264"),
    ("http://alice:p%40ssW0rd@127.0.0.1:8799/x.avi", "http://127.0.0.1:8799/x.avi"),
    ("http://example.org/a.mjpg?x=1", "http://example.org/a.mjpg?x=1"),
    ("http://h/x?token=SECRET&x=1", "http://h/x?token=***&x=1"),
    ("http://h/x?api_key=K1&Signature=S2&X-Amz-Credential=C3&password=P4&flag", "http://h/x?api_key=***&Signature=***"
     "&X-Amz-Credential=***&password=***&flag"),
    ("http://h/x?%74oken=SECRET", "http://h/x?%74oken=***"),  # a percent-encoded name
    ("http://u@[::1]:8080/live", "http://[::1]:8080/live"),
])
def test_public_url(url, public):
    assert public_url(url) == public


def test_redactor_hides_each_secret_in_any_form_and_every_url():
    r = Redactor("http://alice:p%40ssW0rd@127.0.0.1:8799/x.avi?token=S%2BCRET")
    chatter = ("[http @ 0x5] Connection to tcp://127.0.0.1:8799 failed for user alice\n"
               "opening http://alice:p%40ssW0rd@127.0.0.1:8799/x.avi?token=S%2BCRET: p@ssW0rd p%40ssW0rd S+CRET\n")
    clean = r.clean(chatter)
    for secret in ("alice", "p@ssW0rd", "p%40ssW0rd", "S+CRET", "S%2BCRET"):
        assert secret not in clean
    assert "Connection to tcp://127.0.0.1:8799 failed" in clean and "http://127.0.0.1:8799/x.avi?token=***" in clean
    assert Redactor("http://example.org/a.mjpg").clean("plain text") == "plain text"
