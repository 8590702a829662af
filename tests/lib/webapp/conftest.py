"""The detector of the web app's library tests: SSH with random weights at a tiny test scale."""
import pytest

from lib.config import get_config
from model.detector import Detector


@pytest.fixture(scope="module")
def small_detector(random_checkpoint):
    """(Detector of the random checkpoint at TEST.SCALES [64], MAX_SIZE 96, its .pth path)."""
    net, pth = random_checkpoint
    cfg = get_config(set_pairs=[("TEST.SCALES", "[64]"), ("TEST.MAX_SIZE", "96")])
    return Detector.from_config(net, cfg), pth
