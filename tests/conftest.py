"""Shared fixtures: the device tests run on (SSH_TEST_DEVICE=cuda in `make gpu-check`), the backoff
waits of downloads; the ../shared checks (tests/shared.py): skipped loudly without it, failed under
SSH_REQUIRE_SHARED=1."""
import os
import signal

import pytest
import torch

from shared import SKIP_PREFIX, require


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared(*paths): the test reads these files under ../shared")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A shell starts background jobs (`make test &`, nohup) with Ctrl-C ignored, which Python and every
        # process the tests start would inherit: the Ctrl-C tests need it delivered, as in a terminal.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_shared"):
        require(*mark.args)


def pytest_terminal_summary(terminalreporter):
    """A banner naming every ../shared check that was skipped, so a green run cannot hide them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and r.longrepr[2].startswith(f"Skipped: {SKIP_PREFIX}")]
    if not skipped:
        return
    write = terminalreporter.write_line
    write("")
    write(f"!!! {len(skipped)} exactness check(s) did NOT run: ../shared (official prototxts, WIDER files, "
          "the official tool's numbers) is absent. Their passes prove nothing here:", red=True, bold=True)
    for report in skipped:
        write(f"!!!   {report.nodeid}: {report.longrepr[2].removeprefix('Skipped: ')}", red=True)


@pytest.fixture(scope="session")
def device():
    name = os.environ.get("SSH_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("SSH_TEST_DEVICE asks for CUDA, which is not available")
    return torch.device(name)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """(SSH with seeded random weights in eval mode, its state_dict saved as a .pth), per test module."""
    from model import SSH

    torch.manual_seed(0)
    net = SSH().eval()
    pth = tmp_path_factory.mktemp("checkpoint") / "ssh.pth"
    torch.save(net.state_dict(), pth)
    return net, pth


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff waits of lib/utils/download.py, recorded instead of slept."""
    from lib.utils import download

    waits = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    return waits
