"""What the browser tests share: a free local port and the headless Chromium they drive."""
import os
import shutil
import socket

import pytest


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_binaries():
    """(chromium, chromedriver) paths; skipped when missing (failed under CI, whose setup installs them)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not all(found):
        message = ("headless Chromium and chromedriver are missing: `make browser` installs them (Debian chromium, "
                   "chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
