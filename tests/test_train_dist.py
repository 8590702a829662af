"""train_dist.py and lib/utils/distributed.py: 2 processes on 127.0.0.1 with gloo on CPU.

Equivalence with one process, resume, rank-0-only outputs, and bounded exits with the failing rank
named when a peer dies or never joins.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from wider_fixtures import tiny_wider

import train
import train_dist
from lib.train_log import read_metrics
from lib.utils.distributed import (Launch, all_reduce_mean, any_rank, broadcast_module, failure_message,
                                   launch_from, pick_device, split_iter_size)

REPO = Path(__file__).resolve().parents[1]
# 64-pixel blobs, 4 images per SGD step, one log line per step.
TINY = ["--init", "none", "--device", "cpu", "--workers", "0", "--set", "TRAIN.SCALES", "[64]",
        "--set", "TRAIN.ITER_SIZE", "4", "--set", "TRAIN.DISPLAY", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """A WIDER-layout folder with three random 64x80 images and one face box each (6 items with flips)."""
    return tiny_wider(tmp_path_factory.mktemp("wider"), 3, seed=1, x0=8, dx=6, y0=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args, ranks, world_size, port, out_dir):
    """Popen train_dist.py for each of `ranks`; stdout and stderr go to out_dir/rank<r>.{out,err}."""
    procs = {}
    for r in ranks:
        cmd = [sys.executable, "train_dist.py", *args, "--rank", str(r), "--world_size", str(world_size),
               "--master_ip", "127.0.0.1", "--master_port", str(port)]
        procs[r] = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=open(out_dir / f"rank{r}.out", "w"),
                                    stderr=open(out_dir / f"rank{r}.err", "w"), text=True)
    return procs


def wait_all(procs, timeout):
    """{rank: exit code}; kills every process left after `timeout` seconds and fails."""
    deadline = time.monotonic() + timeout
    try:
        return {r: p.wait(timeout=max(deadline - time.monotonic(), 0.1)) for r, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()


def run_ranks(args, world_size, out_dir, timeout=120):
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = start_ranks(args, range(world_size), world_size, free_port(), out_dir)
    codes = wait_all(procs, timeout)
    assert codes == {r: 0 for r in range(world_size)}, (out_dir / "rank0.err").read_text()[-3000:]


def read(path):
    return Path(path).read_text()


# --- exactness, resume, rank-0 outputs ---------------------------------------------------------------

def test_two_ranks_match_one_process_and_resume(wider, tmp_path):
    """2 ranks x 2 images == 1 process x 4 images after 3 steps (one across an epoch boundary).

    The 2-rank run (flags) stops at step 2 and resumes from its snapshot under torchrun, so resume and
    the env:// set-up are checked on the way.
    """
    single, multi = tmp_path / "single", tmp_path / "multi"
    common = ["--data", str(wider), *TINY, "--set", "TRAIN.SNAPSHOT", "2"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1)
    try:
        assert train.main([*common, "--iters", "3", "--out", str(single)]) == 0
    finally:
        torch.set_num_threads(threads)
    run_ranks([*common, "--iters", "2", "--out", str(multi)], 2, tmp_path / "logs1")
    torchrun = subprocess.run(  # the resume leg under torchrun (env://)
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train_dist.py",
         *common, "--iters", "3", "--out", str(multi), "--resume", str(multi / "SSH_iter_2.pth")],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]

    a = torch.load(single / "SSH_iter_3.pth", weights_only=True)
    b = torch.load(multi / "SSH_iter_3.pth", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-7)
    for s, t in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(t["history"], s["history"], rtol=1e-4, atol=1e-9)
    # The tolerance is far below what one step changes: a wrong image or order would show.
    before = torch.load(single / "SSH_iter_2.pth", weights_only=True)["model"]
    assert max((a["model"][k] - before[k]).abs().max().item() for k in before) > 1e-3
    assert b["extra"]["consumed"] == a["extra"]["consumed"] == 12 and b["extra"]["world_size"] == 2

    single_losses, multi_losses = read_metrics(single / "metrics.jsonl"), read_metrics(multi / "metrics.jsonl")
    assert [r["iteration"] for r in multi_losses] == [1, 2, 3]  # rank 0 alone writes metrics
    for r, s in zip(multi_losses, single_losses):
        assert r["loss"] == pytest.approx(s["loss"], rel=1e-5)

    log = read(tmp_path / "logs1" / "rank0.out")
    assert "on 2 processes (gloo, rank 0 on cpu): 2 x 2 = 4 images per SGD step (TRAIN.ITER_SIZE 4)" in log
    assert "iter 2/2" in log and "Wrote snapshot to" in log
    assert torchrun.stdout.count("iter 3/3") == 1  # rank 0 alone logs under torchrun too
    assert read(tmp_path / "logs1" / "rank1.out") == ""  # rank 1 prints nothing
    assert sorted(p.name for p in multi.glob("*.pth")) == ["SSH_iter_2.pth", "SSH_iter_3.pth"]
    assert not list(multi.glob(".*"))  # no temporary files left


def test_a_nan_loss_stops_every_rank(wider, tmp_path):
    """The losses are averaged before the NaN check, so all ranks stop at the same step (no rank left waiting)."""
    # lr 1e6 makes the weights explode after the first step: the loss of step 2 is NaN.
    args = ["--data", str(wider), *TINY, "--set", "TRAIN.SNAPSHOT", "1", "--set", "TRAIN.BASE_LR", "1e6",
            "--iters", "5", "--out", str(tmp_path), "--timeout", "60"]
    codes = wait_all(start_ranks(args, [0, 1], 2, free_port(), tmp_path), 50)
    assert codes == {0: 3, 1: 3}
    assert "non-finite loss at iteration 2" in read(tmp_path / "rank0.err")
    assert f"last good snapshot is {tmp_path / 'SSH_iter_1.pth'}" in read(tmp_path / "rank0.err")
    assert read(tmp_path / "rank1.err") == ""
    assert [p.name for p in tmp_path.glob("*.pth")] == ["SSH_iter_1.pth"]


# --- faults --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("killed, sig, timeout", [(1, signal.SIGKILL, 10), (0, signal.SIGKILL, 10),
                                                  (1, signal.SIGSTOP, 6)])
def test_a_dead_peer_ends_the_others_with_its_rank_named(wider, tmp_path, killed, sig, timeout):
    """Kill (or freeze) one rank during training: the other exits (code 4) in bounded time naming it.

    A dead peer is noticed at once (gloo: connection closed), a frozen one after --timeout; the
    survivor then waits up to 5 s for the others to answer before naming the silent ones.
    """
    args = ["--data", str(wider), *TINY, "--iters", "1000", "--out", str(tmp_path), "--timeout", str(timeout)]
    procs = start_ranks(args, [0, 1], 2, free_port(), tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "iter 2/1000" not in read(tmp_path / "rank0.out"):
            assert time.monotonic() < deadline and procs[0].poll() is None, read(tmp_path / "rank0.err")
            time.sleep(0.1)
        procs[killed].send_signal(sig)
        killed_at = time.monotonic()
        survivor = 1 - killed
        code = procs[survivor].wait(timeout=3 * timeout)
        elapsed = time.monotonic() - killed_at
    finally:
        for p in procs.values():
            p.kill()
    err = read(tmp_path / f"rank{survivor}.err")
    assert code == train_dist.PEER_FAILURE_EXIT, err
    assert elapsed < (timeout if sig == signal.SIGKILL else timeout + 5 + 10), elapsed
    lost = "lost rank 1 while" if killed == 1 else "lost rank 0 (the master: its rendezvous store is gone) while"
    assert f"error: rank {survivor}: {lost}" in err
    if killed == 1:  # rank 0 keeps the weights of the last completed step
        out = read(tmp_path / "rank0.out")
        snapshot = max(tmp_path.glob("SSH_iter_*.pth"), key=lambda p: int(p.stem.split("_")[-1]))
        assert f"Continue with --resume {snapshot}" in out
        n = torch.load(snapshot, weights_only=True)["iteration"]
        assert n >= 2 and f"iter {n}/1000" in out


def test_a_peer_that_never_joins_is_named(wider, tmp_path):
    """Rank 0 without rank 1, and rank 1 without rank 0 (on another port), both end in bounded time."""
    timeout = 3
    args = ["--data", str(wider), *TINY, "--iters", "2", "--out", str(tmp_path), "--timeout", str(timeout)]
    lonely_master = start_ranks(args, [0], 2, free_port(), tmp_path)
    lonely_worker = start_ranks(args, [1], 2, free_port(), tmp_path)
    started = time.monotonic()
    codes = wait_all({**lonely_master, **lonely_worker}, 60)
    assert time.monotonic() - started < 30
    assert codes == {0: train_dist.PEER_FAILURE_EXIT, 1: train_dist.PEER_FAILURE_EXIT}
    assert "error: rank 0: rank 1 of 2 did not join at 127.0.0.1:" in read(tmp_path / "rank0.err")
    assert "error: rank 1: no master (rank 0) at 127.0.0.1:" in read(tmp_path / "rank1.err")


# --- the helpers ---------------------------------------------------------------------------------------

def _collectives(rank, world_size, port, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        tensors = [torch.full((2, 3), float(rank)), torch.tensor([10.0 * rank], dtype=torch.float64),
                   torch.arange(4.0) * (rank + 1)]
        all_reduce_mean(tensors)
        net = torch.nn.Linear(2, 2)
        with torch.no_grad():
            net.weight.fill_(rank)
        broadcast_module(net)
        results.put((rank, [t.tolist() for t in tensors], tensors[1].dtype, net.weight.tolist(),
                     any_rank(rank == 1, torch.device("cpu")), any_rank(False, torch.device("cpu"))))
    finally:
        dist.destroy_process_group()


def test_all_reduce_mean_broadcast_and_any_rank():
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_collectives, args=(2, free_port(), results), nprocs=2, start_method="spawn")
    got = sorted(results.get(timeout=10) for _ in range(2))
    for rank, tensors, dtype, weight, any_true, any_false in got:
        assert tensors == [[[0.5] * 3] * 2, [5.0], [0.0, 1.5, 3.0, 4.5]]
        assert dtype == torch.float64
        assert weight == [[0.0, 0.0], [0.0, 0.0]]  # rank 0's
        assert any_true is True and any_false is False


def test_launch_from_flags_or_torchrun_environment():
    assert launch_from(1, 4, "10.0.0.1", 29500, environ={}) == Launch(1, 4, None, ("10.0.0.1", 29500))
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert launch_from(None, None, "127.0.0.1", 29500, environ=env) == Launch(3, 8, 1, None)
    with pytest.raises(ValueError, match="--rank and --world_size go together"):
        launch_from(0, None, "127.0.0.1", 29500, environ=env)
    with pytest.raises(ValueError, match=r"--rank 2 is not in \[0, --world_size 2\)"):
        launch_from(2, 2, "127.0.0.1", 29500, environ={})
    with pytest.raises(ValueError, match="run under torchrun"):
        launch_from(None, None, "127.0.0.1", 29500, environ={"RANK": "0"})


def test_pick_device_on_cpu():
    launch = Launch(0, 2, None, ("127.0.0.1", 29500))
    assert pick_device("cpu", None, launch) == torch.device("cpu")
    with pytest.raises(ValueError, match="--gpu needs --device cuda"):
        pick_device("cpu", 1, launch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pick_device_on_cuda():
    assert pick_device("cuda", None, Launch(0, 1, 0, None)) == torch.device("cuda", 0)
    assert torch.cuda.current_device() == 0


@pytest.mark.parametrize("world_size, per_rank", [(1, 8), (2, 4), (4, 2), (8, 1), (3, 3), (5, 2), (6, 1), (16, 1)])
def test_official_8_images_per_step_split_over_the_ranks(world_size, per_rank):
    assert split_iter_size(8, world_size) == per_rank


def test_failure_message_names_the_peers():
    assert failure_message(0, [1, 3], "while averaging gradients: reset") == \
        "rank 0: lost ranks 1, 3 while averaging gradients: reset"
    assert failure_message(2, None, "x").startswith("rank 2: lost rank 0 (the master")


def test_unknown_train_option_is_refused(capsys):
    with pytest.raises(SystemExit):
        train_dist.parse_args(["--rank", "0", "--world_size", "1", "--bogus"])
    assert "--bogus" in capsys.readouterr().err
