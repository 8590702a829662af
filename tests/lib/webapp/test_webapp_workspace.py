"""lib/webapp/workspace.py: one temporary folder, request folders pruned when idle, all removed at the end."""
import os
import tempfile
import time

from lib.webapp.workspace import temporary_workspace


def test_idle_request_folders_are_pruned_and_busy_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with temporary_workspace(keep_seconds=60) as workspace:
        assert workspace.root.parent == tmp_path and workspace.root.name.startswith("ssh-app-")
        with workspace.request() as old:
            (old / "result.jpg").write_bytes(b"x")
        with workspace.request() as busy:
            hour_ago = time.time() - 3600
            os.utime(old, (hour_ago, hour_ago))
            os.utime(busy, (hour_ago, hour_ago))
            workspace.prune()
            assert not old.exists() and busy.is_dir()
        with workspace.request() as fresh:
            assert busy.is_dir() and fresh.is_dir()  # just finished: kept for keep_seconds
    assert not workspace.root.exists() and list(tmp_path.iterdir()) == []
