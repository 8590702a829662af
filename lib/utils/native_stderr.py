"""What native libraries (OpenCV, FFmpeg, libjpeg) print to the process's standard error.

They write to file descriptor 2 directly, past Python's sys.stderr, so their chatter ("[tcp @ 0x...]
Connection refused", "moov atom not found", "Premature end of JPEG file") lands beside this project's
one-line messages, and may carry a stream's credentials. `captured_stderr()` diverts it for a block,
so the caller can turn it into a message of its own (or drop it).
"""
import os
import sys
import tempfile
import threading
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def captured_stderr():
    """Divert file descriptor 2 to a temporary file inside the block; yields a list that holds the
    text written there once the block ends. Python's own stderr writes in the block are diverted too;
    blocks in several threads take turns."""
    with _LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        text = []
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text.append(tmp.read().decode("utf-8", "replace"))
