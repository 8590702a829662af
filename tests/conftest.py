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
