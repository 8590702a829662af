"""lib/webapp/page.py: the page's endpoints share one detector, and its queue is bounded."""
import pytest
import tqdm.auto
import tqdm.std

from lib.webapp.limits import Limits
from lib.webapp.page import build_page
from lib.webapp.workspace import Workspace


@pytest.fixture(autouse=True)
def tqdm_kept(monkeypatch):
    """The Video tab's progress bar follows run_video's tqdm: Gradio patches tqdm for that, in this process
    too; undone after the test."""
    for name in ("__init__", "update", "close", "__exit__", "__iter__"):
        monkeypatch.setattr(tqdm.std.tqdm, name, tqdm.std.tqdm.__dict__[name])
    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.auto.tqdm)


def test_two_public_endpoints_one_at_a_time_and_a_bounded_queue(tmp_path):
    page = build_page(object(), "m.pth", "fp32", Workspace(tmp_path, 60), Limits(queue_size=3))
    public = {f.api_name: f for f in page.fns.values() if f.api_visibility == "public"}
    assert sorted(public) == ["photos", "video"]
    assert {(f.concurrency_id, f.concurrency_limit) for f in public.values()} == {("detector", 1)}
    assert page._queue.max_size == 3
    assert list(tmp_path.iterdir()) == []  # nothing is written before a request
