"""The web app's temporary folder: everything the app writes lives in it, and it is removed at exit.

    <root>/gradio/      Gradio's uploads and the copies of results it serves (GRADIO_TEMP_DIR)
    <root>/requests/*/  one folder per request: its inputs under in/, test.py's outputs under out/

Request folders older than `keep_seconds` are removed as new ones are made (never one in use); Gradio
removes its own copies on the same schedule (gr.Blocks(delete_cache=...)).
"""
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class Workspace:
    """The folders of a running app under `root` (which exists)."""

    def __init__(self, root, keep_seconds):
        self.root = Path(root)
        self.keep_seconds = keep_seconds
        self._busy = set()
        self._lock = threading.Lock()

    @property
    def gradio(self):
        """Gradio's upload and cache folder (GRADIO_TEMP_DIR)."""
        return self.root / "gradio"

    @property
    def requests(self):
        return self.root / "requests"

    @contextmanager
    def request(self):
        """Yield a new empty folder for one request; old idle ones are removed first."""
        self.prune()
        self.requests.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.requests))
        with self._lock:
            self._busy.add(folder)
        try:
            yield folder
        finally:
            with self._lock:
                self._busy.discard(folder)
            folder.touch()  # its age counts from the end of the request

    def prune(self, now=None):
        """Remove the request folders idle for more than keep_seconds."""
        now = time.time() if now is None else now
        if not self.requests.is_dir():
            return
        with self._lock:
            old = [p for p in self.requests.iterdir()
                   if p not in self._busy and now - p.stat().st_mtime > self.keep_seconds]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def temporary_workspace(keep_seconds):
    """Yield a Workspace in a new folder of the system's temporary folder, removed with all it holds when
    the block ends."""
    root = tempfile.mkdtemp(prefix="ssh-app-")
    try:
        yield Workspace(root, keep_seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
