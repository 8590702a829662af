"""Run calls in order on one background thread, so that encoding and writing outputs stay off the
network's path (JPEG and PNG encoding, like decoding, runs in OpenCV without the GIL).

At most `depth` calls wait, so memory stays bounded. Leaving the `with` block, by its end, an error or
Ctrl-C, waits until every call handed over has run: what was submitted is written whole. The first
error of a call is raised in the caller, at its next `submit` or when the block ends; the calls after
it are not run.
"""
import queue
import threading

_STOP = object()


class WriteBehind:
    """Calls `fn(*args)` of `submit` on one thread, in submission order (in the caller when not `enabled`)."""

    def __init__(self, enabled=True, depth=2):
        if depth < 1:
            raise ValueError(f"depth must be 1 or more, got {depth}")
        self.enabled = enabled
        self._queue = queue.Queue(depth)
        self._error = None
        self._thread = None

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._work, name="write-behind", daemon=True)
            self._thread.start()
        return self

    def _work(self):
        while (call := self._queue.get()) is not _STOP:
            if self._error is None:
                try:
                    call[0](*call[1])
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    self._error = e

    def _raise(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn, *args):
        """Run fn(*args) after the calls submitted before (at once when not enabled)."""
        if self._thread is None:
            fn(*args)
            return
        self._raise()
        self._queue.put((fn, args))

    def __exit__(self, exc_type, exc, tb):
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if exc_type is None:
            self._raise()
        return False
