"""lib/utils/native_stderr.py: what native code writes to file descriptor 2 is captured, not printed."""
import os
import subprocess
import sys

from lib.utils.native_stderr import captured_stderr
from shared import ROOT


def test_writes_to_fd_2_are_captured_and_stderr_restored():
    code = ("import os, sys\n"
            "from lib.utils.native_stderr import captured_stderr\n"
            "with captured_stderr() as text:\n"
            "    os.write(2, b'[tcp @ 0x1] Connection refused\\n')\n"
            "    print('python too', file=sys.stderr)\n"
            "print(repr(text[0]))\n"
            "os.write(2, b'after\\n')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert run.stdout == repr("[tcp @ 0x1] Connection refused\npython too\n") + "\n"
    assert run.stderr == "after\n"


def test_an_exception_in_the_block_restores_fd_2():
    before = os.fstat(2).st_ino
    try:
        with captured_stderr():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert os.fstat(2).st_ino == before
