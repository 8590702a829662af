"""Shared fixtures: the device tests run on (SSH_TEST_DEVICE=cuda in `make gpu-check`)."""
import os

import pytest
import torch


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
