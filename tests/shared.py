"""The project's shared data beside the repository (../shared), and how tests that need it say so.

The exactness checks against independent truth (the official prototxts run by OpenCV, the real
WIDER files, the official tool's APs) read ../shared. Without it they skip with a reason starting
with SKIP_PREFIX, and conftest.py ends the run with a loud list of what did not run; with
SSH_REQUIRE_SHARED=1 (set by .ci/run) a missing file fails the test instead.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# SSH_SHARED points elsewhere, e.g. for a scratch copy of the repository (tests/mutants.py).
SHARED = Path(os.environ.get("SSH_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"
SKIP_PREFIX = "needs ../shared"


def require(*paths):
    """Skip the calling test (fail it under SSH_REQUIRE_SHARED=1) unless every path exists."""
    missing = [p for p in paths if not Path(p).exists()]
    if not missing:
        return
    where = ", ".join(str(Path(p).relative_to(SHARED.parent)) if SHARED.parent in Path(p).parents else str(p)
                      for p in missing)
    if os.environ.get("SSH_REQUIRE_SHARED") == "1":
        pytest.fail(f"{where} is missing and SSH_REQUIRE_SHARED=1: this exactness check must run", pytrace=False)
    pytest.skip(f"{SKIP_PREFIX}: {where} is absent")


def needs_shared(*paths):
    """Marker for a test or module (pytestmark) that needs these paths; checked by conftest.py with `require`."""
    return pytest.mark.needs_shared(*paths)
