"""The real WIDER val data of the evaluation tests (../shared): the official ground truth and a real
detector's 3,226 prediction files, unpacked once per session; and a time limit for code that must
not hang."""
import contextlib
import signal
import tarfile

import pytest

from shared import DATA, require

GT_DIR = DATA / "wider_eval_gt"
ARCHIVE = DATA / "wider_val_predictions" / "yolov7face_val_txt.tar.gz"


@pytest.fixture(scope="session")
def wider_gt():
    """The official tool's ground truth (GroundTruth of the 3,226 val images)."""
    from lib.evaluation import load_ground_truth

    require(GT_DIR)
    return load_ground_truth(GT_DIR)


@pytest.fixture(scope="session")
def yolov7face(tmp_path_factory):
    """The folder of yolov7-face's <event>/<image>.txt files; tests copy it before changing a file."""
    require(ARCHIVE)
    out = tmp_path_factory.mktemp("predictions")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(out, filter="data")
    return out / "yolov7face"


@pytest.fixture(scope="session")
def yolov7face_results(wider_gt, yolov7face):
    """wider_eval of the unchanged yolov7-face files: the official tool's numbers (test_official_ap.py)."""
    from lib.evaluation import wider_eval

    return wider_eval(yolov7face, wider_gt)


@contextlib.contextmanager
def time_limit(seconds):
    """Raise TimeoutError in the block after `seconds` (SIGALRM; regex matching is interrupted too)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def deadline():
    """`with deadline(s):` fails the test, instead of hanging, when the block runs longer than s."""
    return time_limit
