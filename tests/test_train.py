"""Training step, loop, snapshots and train.py: accumulation, exact resume, NaN stop, Ctrl-C."""
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from wider_fixtures import tiny_wider

import train
from lib.solver import CaffeSGD, StepLR
from lib.train_log import read_metrics, running_mean
from lib.training import NonFiniteLoss, StopOnSigint, train_loop, train_step
from lib.utils.checkpoint import get_rng_state, load_snapshot, save_snapshot, set_rng_state

REPO = Path(__file__).resolve().parents[1]
# Tiny fast runs: 64-pixel blobs, 2 images per SGD step, one log line per step.
TINY = ["--init", "none", "--set", "TRAIN.SCALES", "[64]", "--set", "TRAIN.ITER_SIZE", "2",
        "--set", "TRAIN.DISPLAY", "1"]


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """A WIDER-layout folder with two random 64x80 images and one face box each (4 items with flips)."""
    return tiny_wider(tmp_path_factory.mktemp("wider"), 2, seed=0, x0=10, dx=5, y0=12)


def _losses(metrics_path):
    return [{k: v for k, v in r.items() if k.endswith("_loss") or k in ("iteration", "lr")}
            for r in read_metrics(metrics_path)]


# --- the step -------------------------------------------------------------------------------------

def _toy():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = CaffeSGD([{"params": net.parameters(), "lr_mult": 1}], lr=0.1, momentum=0.9)
    return net, opt


def _toy_loss(net):
    return lambda item: {"a_loss": (net(item[0]) - item[1]).pow(2).mean(), "b_loss": net.weight.abs().sum()}


def test_train_step_accumulates_the_mean_gradient():
    items = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    net, opt = _toy()
    ref, _ = _toy()
    losses = train_step(opt, items, _toy_loss(net))
    total = sum(sum(_toy_loss(ref)(item).values()) for item in items) / 3
    total.backward()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert losses["a_loss"] == pytest.approx(sum(_toy_loss(ref)(i)["a_loss"].item() for i in items) / 3)


def test_train_step_average_hook_sees_losses_and_gradients():
    items = [(torch.randn(4, 3), torch.randn(4, 1))]
    net, opt = _toy()
    seen = []

    def halve(tensors):  # a peer process contributing zero losses and gradients
        seen.append(len(tensors))
        for t in tensors:
            t.mul_(0.5)

    before = net.weight.detach().clone()
    full, _ = _toy()
    sum(_toy_loss(full)(items[0]).values()).backward()
    losses = train_step(opt, items, _toy_loss(net), average=halve)
    assert seen == [1 + 2]  # the stacked losses, then the weight and bias gradients
    assert losses["b_loss"] == pytest.approx(0.5 * before.abs().sum().item())
    torch.testing.assert_close(before - net.weight.detach(), 0.1 * 0.5 * full.weight.grad)


def test_train_step_refuses_a_nan_loss_before_changing_weights():
    net, opt = _toy()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(NonFiniteLoss, match="a_loss = nan"):
        train_step(opt, [0], lambda item: {"a_loss": net.weight.sum() * float("nan")})
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))


# --- the loop -------------------------------------------------------------------------------------

def test_loop_snapshots_on_schedule_at_the_end_and_on_stop():
    net, opt = _toy()
    items = iter([(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(100)])
    logged, saved = [], []
    stop_after = 5
    result = train_loop(opt, items, _toy_loss(net), StepLR(0.1, 0.1, 3), start_iter=0, max_iters=100,
                        iter_size=2, snapshot_every=2, snapshot=saved.append,
                        log=lambda it, lr, losses: logged.append((it, lr)),
                        should_stop=lambda: len(logged) >= stop_after)
    assert result == (5, "stopped")
    assert saved == [2, 4, 5]
    assert [it for it, _ in logged] == [1, 2, 3, 4, 5]
    assert [lr for _, lr in logged] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_sigint_requests_a_stop_and_a_second_one_interrupts():
    with StopOnSigint() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- snapshots ------------------------------------------------------------------------------------

def test_rng_state_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    set_rng_state(state)
    again = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    assert first[:3] == again[:3] and torch.equal(first[3], again[3])


def test_snapshot_is_complete_atomic_and_loads_weights_only(tmp_path):
    net, opt = _toy()
    train_step(opt, [(torch.randn(2, 3), torch.randn(2, 1))], _toy_loss(net))
    path = tmp_path / "SSH_iter_7.pth"
    save_snapshot(path, model=net, optimizer=opt, iteration=7, schedule={"base_lr": 0.1}, extra={"consumed": 14})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    state = torch.load(path, weights_only=True)
    assert state.keys() == {"model", "optimizer", "scaler", "schedule", "iteration", "rng", "extra"}
    other, other_opt = _toy()
    with torch.no_grad():
        other.weight.zero_()
    loaded = load_snapshot(path, model=other, optimizer=other_opt)
    assert loaded["iteration"] == 7 and loaded["extra"] == {"consumed": 14}
    assert torch.equal(other.weight, net.weight)
    history = [opt.state[p]["history"] for p in net.parameters()]
    assert all(torch.equal(other_opt.state[p]["history"], h) for p, h in zip(other.parameters(), history))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_snapshot(path, model=net, optimizer=opt, iteration=8, schedule={}, extra={"x": Unpicklable()})
    assert torch.load(path, weights_only=True)["iteration"] == 7  # the old snapshot is intact
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_running_mean():
    np.testing.assert_allclose(running_mean([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


# --- train.py -------------------------------------------------------------------------------------

def test_resume_continues_exactly(wider, tmp_path):
    """3 iterations in one go == 2 iterations, resume, 1 more: same losses and bitwise-equal state.

    The runs cross an epoch boundary (4 items, 2 per step) and use a worker process on one side,
    so the sampler position must come from the consumed-items count, not from the prefetching.
    """
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--data", str(wider), "--device", "cpu", *TINY, "--set", "TRAIN.SNAPSHOT", "2"]
    assert train.main([*common, "--iters", "3", "--out", str(whole), "--workers", "0"]) == 0
    assert train.main([*common, "--iters", "2", "--out", str(split), "--workers", "1"]) == 0
    assert train.main([*common, "--iters", "3", "--out", str(split), "--workers", "1",
                       "--resume", str(split / "SSH_iter_2.pth")]) == 0
    assert [r["iteration"] for r in read_metrics(split / "metrics.jsonl")] == [1, 2, 3]
    assert _losses(whole / "metrics.jsonl") == _losses(split / "metrics.jsonl")
    a = torch.load(whole / "SSH_iter_3.pth", weights_only=True)
    b = torch.load(split / "SSH_iter_3.pth", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    histories = [(s["history"], t["history"]) for s, t in zip(a["optimizer"]["state"].values(),
                                                               b["optimizer"]["state"].values())]
    assert len(histories) == 18 + 6 + 42  # trained VGG, fusion and module tensors
    assert all(torch.equal(h, g) for h, g in histories)
    assert a["iteration"] == b["iteration"] == 3 and a["extra"]["consumed"] == b["extra"]["consumed"] == 6
    assert (split / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_loss_stops_and_keeps_the_last_good_snapshot(wider, tmp_path, capsys):
    # lr 1e6 makes the weights explode after the first step: the loss of step 2 is NaN.
    rc = train.main(["--data", str(wider), "--device", "cpu", "--workers", "0", "--out", str(tmp_path), *TINY,
                     "--set", "TRAIN.SNAPSHOT", "1", "--set", "TRAIN.BASE_LR", "1e6", "--iters", "5"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "non-finite loss at iteration 2" in err and f"last good snapshot is {tmp_path / 'SSH_iter_1.pth'}" in err
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["SSH_iter_1.pth"]
    state = torch.load(tmp_path / "SSH_iter_1.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


def test_missing_imagenet_model_explains_the_options(wider, tmp_path, capsys):
    rc = train.main(["--data", str(wider), "--init", str(tmp_path / "VGG16.caffemodel"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "make fetch-imagenet" in err and "--init none" in err


def test_ctrl_c_saves_a_snapshot_and_exits_cleanly(wider, tmp_path):
    """A real SIGINT to a running train.py (with a loader worker): snapshot, message, exit code 0."""
    cmd = [sys.executable, "train.py", "--data", str(wider), "--device", "cpu", "--workers", "1",
           "--out", str(tmp_path), *TINY, "--iters", "1000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("iter 1/1000"):
                    break
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=120)
        finally:
            proc.kill()
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 0, err
    assert "Ctrl-C: stopping after this iteration" in err
    snapshots = list(tmp_path.glob("SSH_iter_*.pth"))
    assert len(snapshots) == 1, err
    state = torch.load(snapshots[0], weights_only=True)
    n = state["iteration"]
    assert 1 <= n < 1000 and state["extra"]["consumed"] == 2 * n
    assert f"Stopped at iteration {n}; continue with --resume {snapshots[0]}" in out
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["iteration"] == n


def test_training_runs_on_the_test_device(wider, tmp_path, device):
    """data -> targets -> losses -> step with the same code on the test device (CUDA in `make gpu-check`)."""
    args = ["--data", str(wider), "--device", device.type, "--workers", "0", "--out", str(tmp_path), *TINY,
            "--iters", "2"]
    if device.type == "cuda":
        args.append("--amp")
    assert train.main(args) == 0
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records)

