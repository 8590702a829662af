"""test.py under torchrun (2 processes, gloo-free: the ranks meet on torchrun's store): outputs byte-identical
to one process, on one node and on two (two torchrun agents, c10d rendezvous), balanced shares, a frozen rank named by the others, and the same command again finishing the
job with --resume."""
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.detection_job import balanced_shares
from lib.outputs import read_detections_json
from shared import DATA, ROOT, needs_shared, require

MINI = DATA / "mini_wider"
GT_DIR = DATA / "wider_eval_gt"

# The same threads per process on both sides: convolution results depend on the thread count.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96", "--device", "cpu"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """16 noise pictures of mixed sizes in a folder tree."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for k in range(16):
        h, w = (int(v) for v in rng.integers(40, 200, 2))
        path = root / ("sub" if k % 3 == 0 else "") / f"im{k:02d}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def files(folder):
    """Every output file's bytes, but the --resume settings record (it names its own folder)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*")
            if p.is_file() and p.name != ".ssh_run.json"}


def test_balanced_shares():
    assert balanced_shares([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert balanced_shares([3, 3, 2, 2, 2], 2) == [[0, 2, 4], [1, 3]]  # 7 and 5; not 9 and 3
    assert balanced_shares([1, 1], 3) == [[0], [1], []]
    shares = balanced_shares(list(np.random.default_rng(0).integers(1, 100, 200)), 4)
    assert sorted(i for s in shares for i in s) == list(range(200))


def torchrun(args, nproc, logs, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             str(nproc), "test.py", *args], cwd=ROOT, env=ENV, stdout=open(logs / "out", "w"),
                            stderr=open(logs / "err", "w"), text=True, **kwargs)


def test_two_processes_write_what_one_writes(folder, random_checkpoint, tmp_path):
    _, pth = random_checkpoint
    args = ["--dir", str(folder), "--model", str(pth), "--save-json", "--save-crops", "--save-wider", "--thresh",
            "0.3", "--resume"] + SMALL
    one = subprocess.run([sys.executable, "test.py", *args, "--out", str(tmp_path / "one")], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    proc = torchrun(args + ["--out", str(tmp_path / "two")], 2, tmp_path)
    assert proc.wait(timeout=300) == 0, (tmp_path / "err").read_text()[-3000:]
    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert len(read_detections_json(tmp_path / "two" / "detections.json")) == 16
    out = (tmp_path / "out").read_text()
    assert out.count("detections -> ") == 1  # rank 0 reports for the job, counting every rank's images
    counts = [int(c) for c in re.findall(r"\[(\d+) done by the job\]", out)]
    assert counts == sorted(counts) and len(set(counts)) == len(counts) and 0 < len(counts) < 16
    shares = [int(n) for n in re.findall(r"^rank [01]: (\d+) of \1 images", out, re.M)]
    assert len(shares) == 2 and sum(shares) == 16 and min(shares) > 0

    # two machines: one torchrun agent each (1 process), meeting by c10d rendezvous as on a cluster
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nodes",
                               "test.py", *args, "--out", str(tmp_path / "nodes")], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert files(tmp_path / "nodes") == files(tmp_path / "one")
    assert "".join(logs).count("detections -> ") == 1


def _rank_pid(agent, rank):
    """The pid of torchrun worker `rank` started by the agent process `agent`."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == agent.pid:
                if f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_a_frozen_rank_is_named_and_the_same_command_finishes_the_job(folder, random_checkpoint, tmp_path):
    """Rank 1 stopped (SIGSTOP) mid-run: rank 0 names it after --timeout and exits 4; the same command (with
    --resume) then finishes the job, its outputs equal to an unbroken one-process run's."""
    _, pth = random_checkpoint
    # blobs of 200 px: rank 1 is still at work when it is stopped, however fast the machine
    slower = ["--set", "TEST.SCALES", "[200]", "--set", "TEST.MAX_SIZE", "300", "--device", "cpu"]
    args = ["--dir", str(folder), "--model", str(pth), "--save-json", "--thresh", "0.3", "--resume",
            "--timeout", "3", "--out", str(tmp_path / "job")] + slower
    proc, pid = torchrun(args, 2, tmp_path, start_new_session=True), None
    try:
        deadline = time.monotonic() + 120
        while "done by the job]" not in (tmp_path / "out").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()[-3000:]
            time.sleep(0.02)
        pid = _rank_pid(proc, 1)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        named = "error: rank 0: lost rank 1: no sign of life for 3 s; run the same command again to resume"
        while named not in (tmp_path / "err").read_text():  # then torchrun would give the stopped rank 30 s
            assert time.monotonic() < deadline + 60, (tmp_path / "err").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # torchrun
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, TypeError):  # the stopped rank: torchrun starts it in a session of its own
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    rerun = torchrun(args, 2, tmp_path)
    assert rerun.wait(timeout=300) == 0, (tmp_path / "err").read_text()[-3000:]
    assert "--resume: " in (tmp_path / "out").read_text()
    one = subprocess.run([sys.executable, "test.py", *args[:-len(slower) - 2], "--out", str(tmp_path / "one"),
                          *slower], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert files(tmp_path / "job") == files(tmp_path / "one")


def test_video_is_refused_under_torchrun(random_checkpoint, tmp_path):
    _, pth = random_checkpoint
    proc = torchrun(["--video", "0", "--model", str(pth), "--out", str(tmp_path / "o")], 2, tmp_path)
    assert proc.wait(timeout=120) != 0
    assert "error: --video runs in one process" in (tmp_path / "err").read_text()


@needs_shared(MINI)
def test_eval_under_torchrun_writes_and_scores_what_one_process_does(random_checkpoint, tmp_path):
    """eval.py detection mode with 2 processes: the same prediction files and APs as one process."""
    require(GT_DIR)
    _, pth = random_checkpoint
    args = [str(ROOT / "eval.py"), "--model", str(pth), "--data", str(MINI), "--gt", str(GT_DIR), "--device", "cpu",
            "--set", "TEST.SCALES", "[100]", "--set", "TEST.MAX_SIZE", "160"]
    for run, prefix in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])):
        (tmp_path / run).mkdir()
        done = subprocess.run([sys.executable, *prefix, *args], cwd=tmp_path / run, env=ENV, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("17 images detected, 0 taken from the cache") == 1, done.stdout
        assert "detect: 100%" in done.stderr and "17/17" in done.stderr  # one bar for the whole job
    run_dir = Path("output") / "SSH" / "wider_val" / "SSH"
    one, two = (files(tmp_path / run / run_dir / "detections") for run in ("one", "two"))
    assert one == two and len(one) == 17
    assert (tmp_path / "one" / run_dir / "results.json").read_bytes() == (
        tmp_path / "two" / run_dir / "results.json").read_bytes()
