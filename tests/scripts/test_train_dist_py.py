"""train_dist.py and lib/utils/distributed.py: 2 processes on 127.0.0.1 with gloo on CPU.

Equivalence with one process, resume, rank-0-only outputs, bounded exits with the failing rank
named when a peer dies, freezes or never joins, and one `error:` line (no Python traceback, no C++
stack) for every failure and every bad command line. Fault tolerance under torchrun: workers killed
(-9) or preempted (SIGTERM) mid-run, restarted by torchrun with --resume auto, end with the weights
of an unbroken run, also after a restart on another number of processes.
"""
import datetime
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from wider_fixtures import add_val_split, tiny_wider

import eval as eval_script
import train
import train_dist
from lib.solver import CaffeSGD, StepLR
from lib.training import HookBase, LRSchedule, RankSync, Trainer
from lib.training.metrics import read_metrics
from lib.utils.exit_codes import ExitCode
from lib.utils.distributed import (Launch, PeerFailure, all_reduce_mean, broadcast_module, failure_message, launch_from,
                                   lost_ranks, max_over_ranks, pick_device, split_iter_size)
from rounding import assert_normwise_close, relative_l2, summation_rtol
from shared import ROOT as REPO
from tb_events import scalars

# 64-pixel blobs, 4 images per SGD step, one log line per step.
TINY = ["--init", "none", "--device", "cpu", "--workers", "0", "--set", "TRAIN.SCALES", "[64]",
        "--set", "TRAIN.ITER_SIZE", "4", "--set", "TRAIN.DISPLAY", "1"]
# Without TORCH_CPP_LOG_LEVEL, which `import train_dist` sets in this process: train_dist.py must set it itself.
ENV = {**{k: v for k, v in os.environ.items() if k != "TORCH_CPP_LOG_LEVEL"}, "OMP_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """A WIDER-layout folder with three random 64x80 images and one face box each (6 items with flips)."""
    return tiny_wider(tmp_path_factory.mktemp("wider"), 3, seed=1, x0=8, dx=6, y0=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args, ranks, world_size, port, out_dir):
    """Popen train_dist.py for each of `ranks`, with the community port's underscore flags (--world_size,
    --master_ip, --master_port: hidden aliases of the hyphenated ones); stdout and stderr go to
    out_dir/rank<r>.{out,err}."""
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


def error_line(err):
    """The single `error:` line of the stderr text `err`, checked free of Python tracebacks and C++ stacks."""
    for noise in ("Traceback", "frame #", "Exception raised from"):
        assert noise not in err, err[-3000:]
    lines = [line for line in re.split(r"[\r\n]", err) if "error:" in line]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# --- exactness, resume, rank-0 outputs ---------------------------------------------------------------

# Runs on other process counts sum each step's gradients in another order. Every gradient element is a
# float32 sum over at most the step's blob pixels (4 images x 64 x 80 at conv1's resolution), so one
# step's results differ by at most gamma_n of their magnitude, normwise (tests/rounding.py): 2.4e-3.
# Measured with the AVX2 and AVX-512 kernels: 1.1e-5 after 3 steps, 1.5e-4 after 10 (earlier steps'
# differences grow through later ones); a wrong image changes every history by > 9 % in one step.
STEP_RTOL = summation_rtol(4 * 64 * 80)


def histories(snapshot):
    """{parameter index: momentum history} of a snapshot."""
    return {i: s["history"] for i, s in snapshot["optimizer"]["state"].items()}


def assert_same_steps(actual, expected, steps, before):
    """Snapshots of the same training steps up to the rounding of the gradient sums: momentum histories
    within STEP_RTOL; weights within STEP_RTOL of the `steps` updates that made them, measured by the
    updates since `before`, a snapshot of `expected`'s run (each update is lr x history)."""
    assert_normwise_close(histories(actual), histories(expected), STEP_RTOL, "momentum history")
    update = {k: (expected["model"][k] - before["model"][k]) * steps for k in expected["model"]}
    assert_normwise_close(actual["model"], expected["model"], STEP_RTOL, "weights", scale=update)

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
    before = torch.load(single / "SSH_iter_2.pth", weights_only=True)
    assert_same_steps(b, a, 3, before)
    # The tolerance is far below what one step changes: a wrong image or order would show.
    changes = [relative_l2(h, g) for h, g in zip(histories(before).values(), histories(a).values()) if g.any()]
    assert len(changes) > 20 and min(changes) > 20 * STEP_RTOL  # every trained tensor
    assert b["extra"]["consumed"] == a["extra"]["consumed"] == 12 and b["extra"]["world_size"] == 2

    single_losses, multi_losses = read_metrics(single / "metrics.jsonl"), read_metrics(multi / "metrics.jsonl")
    assert [r["iteration"] for r in multi_losses] == [1, 2, 3]  # rank 0 alone writes metrics
    for r, s in zip(multi_losses, single_losses):
        assert r["loss"] == pytest.approx(s["loss"], rel=STEP_RTOL)

    log = read(tmp_path / "logs1" / "rank0.out")
    assert "on 2 processes (gloo, rank 0 on cpu): 2 x 2 = 4 images per SGD step (TRAIN.ITER_SIZE 4)" in log
    assert "iter 2/2" in log and "Wrote snapshot to" in log
    assert torchrun.stdout.count("iter 3/3") == 1  # rank 0 alone logs under torchrun too
    assert read(tmp_path / "logs1" / "rank1.out") == ""  # rank 1 prints nothing
    assert sorted(p.name for p in multi.glob("*.pth")) == ["SSH_iter_2.pth", "SSH_iter_3.pth"]
    assert not list(multi.glob(".*"))  # no temporary files left


def test_validation_is_shared_by_the_ranks_and_gives_eval_py_ap(tmp_path, monkeypatch):
    """--val-every on 2 ranks: each detects its share of the val images, rank 0 scores them all; the AP
    in metrics.jsonl is eval.py's on the same snapshot, from the same prediction files."""
    data = add_val_split(tiny_wider(tmp_path / "wider", 3, seed=3, x0=7, dx=8, y0=9))
    test = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]
    out = tmp_path / "out"
    run_ranks(["--data", str(data), *TINY, *test, "--iters", "2", "--val-every", "2", "--out", str(out)], 2,
              tmp_path / "logs")
    record = read_metrics(out / "metrics.jsonl")[-1]
    assert "iter 2/2  val AP  easy " in read(tmp_path / "logs" / "rank0.out")
    assert read(tmp_path / "logs" / "rank1.out") == ""
    monkeypatch.chdir(tmp_path)
    assert eval_script.main(["--model", str(out / "SSH_iter_2.pth"), "--data", str(data), "--device", "cpu",
                             "--no-cache", *test]) == 0
    run = tmp_path / "output" / "SSH" / "wider_val" / "SSH"
    results = json.loads((run / "results.json").read_text())
    assert {s: results[s] for s in ("easy", "medium", "hard")} == {s: record[f"val_ap_{s}"] for s in
                                                                    ("easy", "medium", "hard")}
    written = sorted((out / "val" / "detections").rglob("*.txt"))
    assert len(written) == 3 and all(
        p.read_bytes() == (run / "detections" / p.relative_to(out / "val" / "detections")).read_bytes()
        for p in written)


def test_ranks_that_would_start_from_different_iterations_refuse_to_train(wider, tmp_path):
    """Rank 0 finds a snapshot in its --out, rank 1 (as on a machine without that folder) none: both exit 2 with
    one line before any step, instead of training diverging copies."""
    assert train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(tmp_path / "a")]) == 0
    procs = {}
    port = free_port()
    for rank, out in ((0, "a"), (1, "b")):
        procs.update(start_ranks(["--data", str(wider), *TINY, "--iters", "2", "--resume", "auto", "--out",
                                  str(tmp_path / out), "--timeout", "10"], [rank], 2, port, tmp_path))
    assert wait_all(procs, 60) == {0: ExitCode.BAD_INPUT, 1: ExitCode.BAD_INPUT}
    for rank in (0, 1):
        assert error_line(read(tmp_path / f"rank{rank}.err")) == (
            f"error: rank {rank}: the processes would start from different iterations (0 .. 1): every machine must "
            "see the same --out folder and snapshots")
    assert sorted(p.name for p in (tmp_path / "a").glob("*.pth")) == ["SSH_iter_1.pth"]


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
                                                  (1, signal.SIGSTOP, 3)])
def test_a_dead_peer_ends_the_others_with_its_rank_named(wider, tmp_path, killed, sig, timeout):
    """Kill (or freeze) one rank during training: the other exits (code 4) naming it.

    A dead peer is noticed at once (gloo: connection closed), a frozen one after --timeout; the
    survivor then waits up to 5 s for the others to answer before naming the silent ones (the
    wait below only guards against a hang; it asserts no speed). Its
    stderr holds that one line: the C++ warnings of the c10d store client (each with a stack trace)
    are off (train_dist.py sets TORCH_CPP_LOG_LEVEL).
    """
    args = ["--data", str(wider), *TINY, "--iters", "1000", "--out", str(tmp_path), "--timeout", str(timeout)]
    procs = start_ranks(args, [0, 1], 2, free_port(), tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "iter 2/1000" not in read(tmp_path / "rank0.out"):
            assert time.monotonic() < deadline and procs[0].poll() is None, read(tmp_path / "rank0.err")
            time.sleep(0.1)
        procs[killed].send_signal(sig)
        survivor = 1 - killed
        code = procs[survivor].wait(timeout=60)
    finally:
        for p in procs.values():
            p.kill()
    err = read(tmp_path / f"rank{survivor}.err")
    assert code == ExitCode.PEER_FAILURE, err
    lost = "lost rank 1 while" if killed == 1 else "lost rank 0 (the master: its rendezvous store is gone) while"
    assert error_line(err).startswith(f"error: rank {survivor}: {lost}")
    if killed == 1:  # rank 0 keeps the weights of the last completed step
        out = read(tmp_path / "rank0.out")
        snapshot = max(tmp_path.glob("SSH_iter_*.pth"), key=lambda p: int(p.stem.split("_")[-1]))
        assert f"Continue with --resume {snapshot}" in out
        n = torch.load(snapshot, weights_only=True)["iteration"]
        assert n >= 2 and f"iter {n}/1000" in out


def test_a_peer_that_never_joins_is_named(wider, tmp_path):
    """Rank 0 without rank 1, and rank 1 without rank 0 (on another port), both end by themselves."""
    timeout = 3
    args = ["--data", str(wider), *TINY, "--iters", "2", "--out", str(tmp_path), "--timeout", str(timeout)]
    lonely_master = start_ranks(args, [0], 2, free_port(), tmp_path)
    lonely_worker = start_ranks(args, [1], 2, free_port(), tmp_path)
    codes = wait_all({**lonely_master, **lonely_worker}, 60)
    assert codes == {0: ExitCode.PEER_FAILURE, 1: ExitCode.PEER_FAILURE}
    assert error_line(read(tmp_path / "rank0.err")).startswith("error: rank 0: rank 1 of 2 did not join at 127.0.0.1:")
    assert error_line(read(tmp_path / "rank1.err")).startswith("error: rank 1: no master (rank 0) at 127.0.0.1:")


def test_lost_ranks_gives_up_on_a_frozen_master():
    """The store of a master stopped by SIGSTOP never replies: lost_ranks answers None after 2 x wait, not never."""
    port = free_port()
    master = subprocess.Popen(
        [sys.executable, "-c", "import datetime, time; import torch.distributed as dist; "
         f"store = dist.TCPStore('127.0.0.1', {port}, 2, True, datetime.timedelta(seconds=30), "
         "wait_for_workers=False); print('up', flush=True); time.sleep(60)"],
        env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert master.stdout.readline() == "up\n"
        store = dist.TCPStore("127.0.0.1", port, 2, False, datetime.timedelta(seconds=10), wait_for_workers=False)
        assert lost_ranks(store, 1, 2, 0.5) == [0]  # the store answers; rank 0 never says it is alive
        master.send_signal(signal.SIGSTOP)
        answers = []
        asking = threading.Thread(target=lambda: answers.append(lost_ranks(store, 1, 2, 0.5)), daemon=True)
        asking.start()
        asking.join(60)  # only guards against a hang: lost_ranks gives up after 2 x 0.5 s
        assert answers == [None]
        master.send_signal(signal.SIGCONT)  # the stuck question ends quietly, not with a C++ warning at kill
        deadline = time.monotonic() + 5
        while any(t.name == "lost_ranks" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        master.kill()
        master.wait()


# --- bad command lines ---------------------------------------------------------------------------------

def busy_port():
    """A socket listening on a free port of 127.0.0.1: the port of another program."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


NO_CUDA = not torch.cuda.is_available()
# (name, arguments ({busy}: a port in use), the error's message); each exits with code 2
BAD_RUNS = [
    ("rank-without-world-size", ["--rank", "0"], "error: --rank and --world-size go together"),
    ("rank-out-of-range", ["--rank", "2", "--world_size", "2"], "error: --rank 2 is not in [0, --world-size 2)"),
    ("world-size-0", ["--rank", "0", "--world_size", "0"], "argument --world-size: must be at least 1, got 0"),
    ("port-in-use", ["--rank", "0", "--world_size", "2", "--device", "cpu", "--master_port", "{busy}"],
     "error: rank 0: --master-port {busy} is in use by another program on this machine"),
    ("unknown-device", ["--rank", "0", "--world_size", "1", "--device", "gpu"], "error: unknown device 'gpu'"),
    ("gpu-beyond-count", ["--rank", "0", "--world_size", "1", "--gpu", "99"],
     "error: --gpu 99: no CUDA GPU is available here" if NO_CUDA else "error: --gpu 99: this machine has"),
    ("no-torchrun-environment", [], "error: give --rank and --world-size, or run under torchrun"),
] + ([("cuda-without-gpu", ["--rank", "0", "--world_size", "1", "--device", "cuda"],
       "error: device 'cuda': no CUDA GPU is available here")] if NO_CUDA else [])


@pytest.fixture(scope="module")
def bad_runs(wider, tmp_path_factory):
    """{name: (exit code, stderr)} of train_dist.py on each command line of BAD_RUNS, all run at once."""
    out = tmp_path_factory.mktemp("bad_runs")
    env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    with busy_port() as busy:
        port = str(busy.getsockname()[1])
        procs = {name: subprocess.Popen(
            [sys.executable, "train_dist.py", "--data", str(wider), "--init", "none", "--workers", "0",
             "--iters", "1", "--out", str(out / name), "--timeout", "3",
             *[a.replace("{busy}", port) for a in args]],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name, args, _ in BAD_RUNS}
        try:
            errs = {name: p.communicate(timeout=60)[1] for name, p in procs.items()}
        finally:
            for p in procs.values():
                p.kill()
                p.stderr.close()
    return {"busy": port, **{name: (procs[name].returncode, err) for name, err in errs.items()}}


@pytest.mark.parametrize("name, message", [(n, m) for n, _, m in BAD_RUNS], ids=[r[0] for r in BAD_RUNS])
def test_a_bad_command_line_ends_with_one_error_line(bad_runs, name, message):
    """Bad input: exit code 2 and one `error:` line naming the value, before any training or waiting."""
    got, err = bad_runs[name]
    assert got == ExitCode.BAD_INPUT, err[-3000:]
    assert message.replace("{busy}", bad_runs["busy"]) in error_line(err)


@pytest.mark.parametrize("args, message", [
    (["--master_port", "70000"], "argument --master-port: must be a TCP port, 1 .. 65535, got 70000"),
    (["--timeout", "0"], "argument --timeout: must be a positive number of seconds, got 0"),
    (["--gpu", "-1"], "argument --gpu: must be at least 0, got -1"),
    (["--device", "cpu", "--gpu", "0"], "error: --gpu 0 needs a CUDA device, but --device is cpu"),
])
def test_a_bad_option_value_ends_with_one_error_line(wider, tmp_path, capsys, args, message):
    """Values refused by the parser or by pick_device, in this process: exit code 2 and one `error:` line."""
    try:
        code = train_dist.main(["--data", str(wider), "--init", "none", "--out", str(tmp_path),
                                "--rank", "0", "--world_size", "1", *args])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert message in error_line(capsys.readouterr().err)


# --- fault tolerance under torchrun ---------------------------------------------------------------------

# 10 steps of 2 x 2 images, a kept snapshot every 4 steps and SSH_latest.pth after each step between them.
ELASTIC_ITERS = 10


def elastic_args(wider, out):
    """The train_dist.py options of every torchrun run below: the same after each restart."""
    return ["--data", str(wider), *TINY, "--iters", str(ELASTIC_ITERS), "--set", "TRAIN.SNAPSHOT", "4",
            "--latest-every", "1", "--resume", "auto", "--out", str(out), "--timeout", "10"]


def torchrun(nproc, restarts, args, logs):
    """Popen torchrun (standalone: one machine) of `nproc` train_dist.py processes, restarting the group up to
    `restarts` times; stdout and stderr go to logs/stdout and logs/stderr."""
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
         "--max-restarts", str(restarts), "train_dist.py", *args],
        cwd=REPO, env=ENV, stdout=open(logs / "stdout", "w"), stderr=open(logs / "stderr", "w"))


def wait_for(logs, pattern, proc, start=0, timeout=300):
    """The offset just after the first match of the regex `pattern` (one line) in logs/stdout from offset
    `start` on; fails when torchrun `proc` ends first."""
    deadline = time.monotonic() + timeout
    while True:
        match = re.compile(pattern, re.M).search(read(logs / "stdout"), start)
        if match:
            return match.end()
        assert proc.poll() is None and time.monotonic() < deadline, read(logs / "stderr")[-3000:]
        time.sleep(0.05)


def step_at_least(step):
    """A regex of rank 0's log line of any step from `step` on."""
    return rf"^iter ({'|'.join(str(n) for n in range(step, ELASTIC_ITERS + 1))})/{ELASTIC_ITERS} "


def worker_pids(agent):
    """{rank: pid} of the workers that the torchrun process `agent` runs (its children; RANK from their environment)."""
    pids = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == agent else []
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        ranks = [int(v[len(b"RANK="):]) for v in environ if v.startswith(b"RANK=")]
        if ranks:
            pids[ranks[0]] = int(stat.parent.name)
    return pids


def signal_workers(proc, logs, plan):
    """For each (step, rank, signal) of `plan`: once the next group of workers has started and rank 0 has logged
    `step` or a later one, send the signal to that rank."""
    position = 0
    for step, rank, sig in plan:
        position = wait_for(logs, r"^Training ", proc, position)
        position = wait_for(logs, step_at_least(step), proc, position)
        os.kill(worker_pids(proc.pid)[rank], sig)


def _steps(out):
    """The records of out/metrics.jsonl without their clock readings."""
    records = read_metrics(out / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in records]


def _final(out):
    return torch.load(out / f"SSH_iter_{ELASTIC_ITERS}.pth", weights_only=True)


def assert_same_run(out, reference):
    """Equal final weights and momentum histories, bit for bit, and equal metrics records, one per step."""
    a, b = _final(out), _final(reference)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    histories = list(zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True))
    assert len(histories) == 66 and all(torch.equal(s["history"], t["history"]) for s, t in histories)
    assert a["extra"]["consumed"] == b["extra"]["consumed"] == 4 * ELASTIC_ITERS
    assert _steps(out) == _steps(reference)
    assert [r["iteration"] for r in _steps(out)] == list(range(1, ELASTIC_ITERS + 1))
    assert not list(out.glob(".*"))  # no temporary file of a killed write left
    assert_same_curves(out, reference)


def assert_same_curves(out, reference):
    """TensorBoard (rank 0's event files, read back by EventAccumulator) shows every step once, the losses and
    lr those of the reference run, whatever restarts wrote them."""
    curves, expected = scalars(out / "tb"), scalars(reference / "tb")
    assert curves.keys() == expected.keys() and "loss/total" in curves
    for tag, values in curves.items():
        assert [step for step, _ in values] == list(range(1, ELASTIC_ITERS + 1)), tag
        if tag.startswith("loss/") or tag == "lr":
            assert values == expected[tag], tag


@pytest.fixture(scope="module")
def unbroken(wider, tmp_path_factory):
    """The output folder of an uninterrupted torchrun run of 2 processes with elastic_args."""
    logs = tmp_path_factory.mktemp("unbroken")
    proc = torchrun(2, 0, elastic_args(wider, logs / "out"), logs)
    assert proc.wait(timeout=300) == 0, read(logs / "stderr")[-3000:]
    assert "--resume auto: no snapshot in " in read(logs / "stdout")
    return logs / "out"


def test_torchrun_restarts_after_two_kill_9_and_ends_as_an_unbroken_run(wider, unbroken, tmp_path):
    """kill -9 of a (seeded) random worker at a random step, twice: torchrun restarts the group each time,
    the ranks continue from the newest snapshot, and the run ends by itself as if nothing had happened."""
    rng = random.Random(22)  # kills rank 0 after step 2, then rank 1 after step 5
    first = rng.randint(2, 3)
    plan = [(first, rng.randint(0, 1), signal.SIGKILL), (rng.randint(first + 3, 7), rng.randint(0, 1), signal.SIGKILL)]
    out = tmp_path / "out"
    proc = torchrun(2, 3, elastic_args(wider, out), tmp_path)
    try:
        signal_workers(proc, tmp_path, plan)
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert code == 0, read(tmp_path / "stderr")[-3000:]
    assert read(tmp_path / "stdout").count("--resume auto: continuing from ") == 2
    assert_same_run(out, unbroken)


def _preempted(logs, out):
    """The iteration of rank 0's "Preempted at iteration N, saved to <out>/SSH_iter_N.pth" line."""
    match = re.search(r"^Preempted at iteration (\d+), saved to (\S+);", read(logs / "stdout"), re.M)
    assert match and match[2] == str(out / f"SSH_iter_{match[1]}.pth"), read(logs / "stdout")[-3000:]
    return int(match[1])


def test_sigterm_to_a_worker_saves_the_step_and_torchrun_continues_from_it(wider, unbroken, tmp_path):
    """SIGTERM to a random worker: every rank stops after the step, rank 0 saves it, all exit 5, torchrun
    restarts the group, which continues from that very step (nothing computed twice)."""
    rng = random.Random(16)
    step, rank = rng.randint(2, 6), rng.randint(0, 1)
    out = tmp_path / "out"
    proc = torchrun(2, 1, elastic_args(wider, out), tmp_path)
    try:
        signal_workers(proc, tmp_path, [(step, rank, signal.SIGTERM)])
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert code == 0, read(tmp_path / "stderr")[-3000:]
    assert "SIGTERM: preempted, stopping after this iteration and saving a snapshot." in read(tmp_path / "stderr")
    saved = _preempted(tmp_path, out)
    assert saved >= step
    assert f"--resume auto: continuing from {out / f'SSH_iter_{saved}.pth'}," in read(tmp_path / "stdout")
    assert_same_run(out, unbroken)


def test_a_restart_on_one_process_keeps_the_images_per_step_and_continues(wider, unbroken, tmp_path):
    """2 processes x 2 images, preempted (torchrun has no restart left, so it ends), then torchrun with 1 process
    x 4 images and the same options: the same images in every step, so the weights equal the unbroken 2-process
    run's up to float rounding (the 4 gradients are summed in another order; a wrong image would differ by far
    more, see test_two_ranks_match_one_process_and_resume)."""
    step = random.Random(17).randint(2, 6)
    out = tmp_path / "out"
    two = torchrun(2, 0, elastic_args(wider, out), tmp_path / "two")
    try:
        signal_workers(two, tmp_path / "two", [(step, 1, signal.SIGTERM)])
        assert two.wait(timeout=300) != 0
    finally:
        two.kill()
    saved = _preempted(tmp_path / "two", out)
    one = torchrun(1, 0, elastic_args(wider, out), tmp_path / "one")
    assert one.wait(timeout=300) == 0, read(tmp_path / "one" / "stderr")[-3000:]
    stdout = read(tmp_path / "one" / "stdout")
    assert f"--resume auto: continuing from {out / f'SSH_iter_{saved}.pth'}," in stdout
    assert "1 x 4 = 4 images per SGD step (TRAIN.ITER_SIZE 4)" in stdout
    before = torch.load(unbroken / f"SSH_iter_{ELASTIC_ITERS - 2}.pth", weights_only=True)
    assert_same_steps(_final(out), _final(unbroken), ELASTIC_ITERS / 2, before)
    steps, reference = _steps(out), _steps(unbroken)
    assert [r["iteration"] for r in steps] == list(range(1, ELASTIC_ITERS + 1))
    assert steps[:saved] == reference[:saved]  # written by the 2-process leg
    for r, s in zip(steps[saved:], reference[saved:], strict=True):
        assert r["loss"] == pytest.approx(s["loss"], rel=STEP_RTOL)


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
                     max_over_ranks([rank, -rank, 7, 2 ** 40 + rank], torch.device("cpu"), "testing")))
    finally:
        dist.destroy_process_group()


def test_all_reduce_mean_broadcast_and_max_over_ranks():
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_collectives, args=(2, free_port(), results), nprocs=2, start_method="spawn")
    got = sorted(results.get(timeout=10) for _ in range(2))
    for rank, tensors, dtype, weight, maxima in got:
        assert tensors == [[[0.5] * 3] * 2, [5.0], [0.0, 1.5, 3.0, 4.5]]
        assert dtype == torch.float64
        assert weight == [[0.0, 0.0], [0.0, 0.0]]  # rank 0's
        assert maxima == [1, 0, 7, 2 ** 40 + 1]  # whole numbers, exact beyond float precision


class _SlowRank0(HookBase):
    """Rank 0 busy for `seconds` after every `every` steps, as when it draws TensorBoard pictures on a CPU."""

    def __init__(self, every, seconds):
        self.every, self.seconds = every, seconds

    def after_step(self):
        if self.trainer.iter % self.every == 0:
            time.sleep(self.seconds)


def _slow_rank0_run(rank, world_size, port, sync, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=1))
    try:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        optimizer = CaffeSGD([{"params": net.parameters(), "lr_mult": 1}], lr=0.1, momentum=0.9)
        items = [(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(4)]
        loss = lambda item: {"a_loss": (net(item[0]) - item[1]).pow(2).mean()}  # noqa: E731
        trainer = Trainer(optimizer, lambda: iter(items), loss, start_iter=0, max_iters=4, iter_size=1,
                          average=all_reduce_mean)
        trainer.register(LRSchedule(StepLR(0.1, 0.1, 10)), _SlowRank0(2, 3.0) if rank == 0 else None,
                         RankSync(2) if sync else None)
        try:
            results.put((rank, trainer.train()))
        except PeerFailure as e:
            results.put((rank, str(e)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sync", [True, False])
def test_ranks_wait_for_rank_0s_snapshot_and_pictures_beyond_the_timeout(sync):
    """Rank 0 busy for 3 s after step 2 (a snapshot and its TensorBoard pictures) with a 1 s collective
    timeout: with RankSync every 2 steps the ranks wait for it and all 4 steps run; without it rank 1's
    next all-reduce times out."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_slow_rank0_run, args=(2, free_port(), sync, results), nprocs=2, start_method="spawn",
                       join=False).join(timeout=60)
    got = dict(results.get(timeout=10) for _ in range(2))
    if sync:
        assert got == {0: (4, "done"), 1: (4, "done")}
    else:
        assert "while averaging gradients" in got[1]


def test_launch_from_flags_or_torchrun_environment():
    assert launch_from(1, 4, "10.0.0.1", 29500, environ={}) == Launch(1, 4, None, ("10.0.0.1", 29500))
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert launch_from(None, None, "127.0.0.1", 29500, environ=env) == Launch(3, 8, 1, None)
    assert launch_from(None, None, "127.0.0.1", 29500, environ={**env, "TORCHELASTIC_RESTART_COUNT": "2"}) == \
        Launch(3, 8, 1, None, restart=2)
    with pytest.raises(ValueError, match="--rank and --world-size go together"):
        launch_from(0, None, "127.0.0.1", 29500, environ=env)
    with pytest.raises(ValueError, match=r"--rank 2 is not in \[0, --world-size 2\)"):
        launch_from(2, 2, "127.0.0.1", 29500, environ={})
    with pytest.raises(ValueError, match="--world-size 0 must be at least 1"):
        launch_from(0, 0, "127.0.0.1", 29500, environ={})
    with pytest.raises(ValueError, match="run under torchrun"):
        launch_from(None, None, "127.0.0.1", 29500, environ={"RANK": "0"})
    with pytest.raises(ValueError, match="environment variable RANK='x' is not a whole number"):
        launch_from(None, None, "127.0.0.1", 29500, environ={**env, "RANK": "x"})


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has `gpus(n)` CUDA GPUs (0: none); returns the devices made current."""
    current = []

    def have(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", current.append)
        return current
    return have


def test_pick_device_without_cuda(gpus):
    current = gpus(0)
    launch = Launch(0, 2, None, ("127.0.0.1", 29500))
    assert pick_device("cpu", None, launch) == torch.device("cpu")
    assert pick_device(None, None, launch) == torch.device("cpu")  # the default: no GPU here
    with pytest.raises(ValueError, match="^--gpu 0: no CUDA GPU is available here"):
        pick_device(None, 0, launch)
    with pytest.raises(ValueError, match="^--gpu 1 needs a CUDA device, but --device is cpu$"):
        pick_device("cpu", 1, launch)
    with pytest.raises(ValueError, match="^device 'cuda': no CUDA GPU is available here"):
        pick_device("cuda", None, launch)
    with pytest.raises(ValueError, match="^unknown device 'gpu'"):
        pick_device("gpu", None, launch)
    assert current == []


def test_pick_device_with_two_gpus(gpus):
    current = gpus(2)
    flags, torchrun = Launch(3, 4, None, ("127.0.0.1", 29500)), Launch(3, 4, 1, None)
    assert pick_device(None, 1, flags) == torch.device("cuda", 1)  # --gpu implies CUDA
    assert pick_device("cuda", 1, flags) == torch.device("cuda", 1)
    assert pick_device("cuda:1", 1, flags) == torch.device("cuda", 1)
    assert pick_device(None, None, flags) == torch.device("cuda", 1)  # rank 3 modulo 2 GPUs
    assert pick_device("cuda", None, torchrun) == torch.device("cuda", 1)  # LOCAL_RANK
    assert pick_device("cuda:0", None, torchrun) == torch.device("cuda", 0)
    assert pick_device("cpu", None, flags) == torch.device("cpu")
    assert current == [torch.device("cuda", 1)] * 5 + [torch.device("cuda", 0)]
    with pytest.raises(ValueError, match=r"^--gpu 2: this machine has 2 CUDA GPU\(s\), 0 \.\. 1$"):
        pick_device(None, 2, flags)
    with pytest.raises(ValueError, match="^--device cuda:0 and --gpu 1 name different GPUs$"):
        pick_device("cuda:0", 1, flags)
    with pytest.raises(ValueError, match="^--gpu 0 needs a CUDA device, but --device is cpu$"):
        pick_device("cpu", 0, flags)
    with pytest.raises(ValueError, match=r"^LOCAL_RANK 2 has no GPU: this machine has 2 CUDA GPU\(s\)"):
        pick_device(None, None, Launch(2, 4, 2, None))


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


def test_options_are_hyphenated_and_the_community_spellings_still_work(capsys):
    """--master-ip, --world-size, ... as the help shows them; the community port's --master_ip --world_size --rank
    --gpu (and train.py's --latest_every) read the same."""
    for flags in (["--master-ip", "10.0.0.1", "--master-port", "29501", "--world-size", "2", "--rank", "1", "--gpu",
                   "0", "--latest-every", "5"],
                  ["--master_ip", "10.0.0.1", "--master_port=29501", "--world_size", "2", "--rank", "1", "--gpu",
                   "0", "--latest_every", "5"]):
        dist_args, args = train_dist.parse_args(flags)
        assert (dist_args.master_ip, dist_args.master_port, dist_args.world_size, dist_args.rank, dist_args.gpu,
                args.latest_every) == ("10.0.0.1", 29501, 2, 1, 0, 5)
    with pytest.raises(SystemExit) as exited:
        train_dist.parse_args(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--world-size" in text and "--master-ip" in text and not re.search(r"--[a-z-]+_", text)  # aliases hidden


def test_an_unresolvable_master_is_one_sentence(monkeypatch):
    """The resolver's failure (patched here: the tests send nothing beyond 127.0.0.1) names --master-ip."""
    from lib.utils import distributed

    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(distributed.socket, "getaddrinfo", no_such_host)
    with pytest.raises(ValueError, match=r"^--master-ip no.such.host does not resolve to an address "
                                         r"\(Name or service not known\)$"):
        distributed.init_distributed(Launch(1, 2, None, ("no.such.host", 29500)), torch.device("cpu"), 3)
