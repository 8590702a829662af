"""Training step, trainer and hooks, snapshots and train.py: accumulation, hook order, exact resume, NaN stop,
Ctrl-C, AMP on CPU, TensorBoard."""
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from wider_fixtures import tiny_wider

import lib.training.run
import train
from lib.config import get_config
from lib.losses import LossSettings
from lib.solver import CaffeSGD, StepLR
from lib.training import (Checkpointer, HookBase, LatestCadence, LRSchedule, NonFiniteLoss, StopOnSignals, Trainer,
                          amp_dtype, drop_torn_line, image_losses, resume_split_error, train_step)
from lib.training.metrics import read_metrics, running_mean
from lib.training.step import gradient_norm
from lib.training.tensorboard import TensorBoard, loss_tag
from lib.utils.checkpoint import get_rng_state, load_snapshot, save_snapshot, set_rng_state
from lib.utils.exit_codes import ExitCode
from shared import ROOT as REPO
from tb_events import events, scalars

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


# --- the trainer and its hooks -----------------------------------------------------------------------

class Recorder(HookBase):
    """Appends (name, event, trainer.iter) of every hook call to `calls`."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def before_train(self):
        self.calls.append((self.name, "before_train", self.trainer.iter))

    def before_step(self):
        self.calls.append((self.name, "before_step", self.trainer.iter))

    def after_step(self):
        self.calls.append((self.name, "after_step", self.trainer.iter))

    def after_train(self):
        self.calls.append((self.name, "after_train", self.trainer.iter))


class StopAfter(HookBase):
    """Requests a stop for `reason` before step `steps` + 1; records the lr of every step done."""

    def __init__(self, steps, reason):
        self.steps, self.reason, self.lrs = steps, reason, []

    def before_step(self):
        if self.trainer.iter >= self.steps:
            self.trainer.request_stop(self.reason)

    def after_step(self):
        self.lrs.append(self.trainer.lr)


def _toy_trainer(start_iter=0, max_iters=100):
    net, opt = _toy()
    items = [(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(2 * max_iters)]
    return Trainer(opt, lambda: iter(items), _toy_loss(net), start_iter=start_iter, max_iters=max_iters, iter_size=2)


def _checkpointer(folder, every, latest, saved):
    """A Checkpointer that records (file name, iteration) instead of writing."""
    def save(path, iteration):
        saved.append((path.name, iteration))
        return path
    return Checkpointer(folder, "SSH", every, save, latest)


@pytest.mark.parametrize("reason", ["stopped", "preempted"])
def test_trainer_snapshots_on_schedule_at_the_end_and_on_stop(reason, tmp_path, capsys):
    trainer = _toy_trainer()
    saved = []
    stop = StopAfter(5, reason)
    trainer.register(stop, LRSchedule(StepLR(0.1, 0.1, 3)), _checkpointer(tmp_path, 2, LatestCadence(every=1), saved))
    assert trainer.train() == (5, reason)
    assert saved == [("SSH_latest.pth", 1), ("SSH_iter_2.pth", 2), ("SSH_latest.pth", 3), ("SSH_iter_4.pth", 4),
                     ("SSH_latest.pth", 5), ("SSH_iter_5.pth", 5)]  # the latest after each other step, kept at stop
    assert stop.lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # no lr set for the step not taken
    out = capsys.readouterr().out
    assert out.endswith(f"Wrote snapshot to {tmp_path / 'SSH_iter_5.pth'}\n" + (
        f"Stopped at iteration 5; continue with --resume {tmp_path / 'SSH_iter_5.pth'}\n" if reason == "stopped" else
        f"Preempted at iteration 5, saved to {tmp_path / 'SSH_iter_5.pth'}; the same command with --resume auto "
        "continues\n"))


def test_trainer_writes_latest_between_kept_snapshots_but_not_at_the_end(tmp_path):
    trainer = _toy_trainer(start_iter=2, max_iters=7)
    saved = []
    trainer.register(LRSchedule(StepLR(0.1, 0.1, 3)), _checkpointer(tmp_path, 3, LatestCadence(every=1), saved))
    assert trainer.train() == (7, "done")
    assert saved == [("SSH_iter_3.pth", 3), ("SSH_latest.pth", 4), ("SSH_latest.pth", 5), ("SSH_iter_6.pth", 6),
                     ("SSH_iter_7.pth", 7)]


def test_hooks_run_in_order_and_after_train_in_reverse():
    trainer = _toy_trainer(max_iters=2)
    calls = []
    trainer.register(Recorder("a", calls), None, Recorder("b", calls), LRSchedule(StepLR(0.1, 0.1, 3)))
    assert trainer.train() == (2, "done")
    step = lambda i: [("a", "before_step", i), ("b", "before_step", i), ("a", "after_step", i + 1),  # noqa: E731
                      ("b", "after_step", i + 1)]
    assert calls == [("a", "before_train", 0), ("b", "before_train", 0), *step(0), *step(1),
                     ("b", "after_train", 2), ("a", "after_train", 2)]


def test_an_error_reaches_every_after_train_which_may_replace_it():
    """A failing step: every after_train sees it; one replaces it; a failing after_train neither hides the
    run's error nor keeps the others from running; a failing before_train still gets every after_train."""
    class Replace(HookBase):
        def after_train(self):
            seen.append(type(self.trainer.error).__name__)
            self.trainer.error = ValueError(f"while training: {self.trainer.error}")

    class Broken(HookBase):
        def after_train(self):
            raise OSError("disk full")

    seen = []
    trainer = _toy_trainer(max_iters=3)
    trainer.loss_fn = lambda item: {"a_loss": torch.tensor(float("nan"), requires_grad=True)}
    trainer.register(Replace(), Broken())
    with pytest.raises(ValueError, match=r"^while training: iteration 1: a_loss = nan$"):
        trainer.train()
    assert seen == ["NonFiniteLoss"] and trainer.iter == 0

    class FailingStart(HookBase):
        def before_train(self):
            raise RuntimeError("no rendezvous")

    trainer, calls = _toy_trainer(), []
    trainer.register(Recorder("a", calls), FailingStart(), Recorder("b", calls))
    with pytest.raises(RuntimeError, match="no rendezvous"):
        trainer.train()
    assert calls == [("a", "before_train", 0), ("b", "after_train", 0), ("a", "after_train", 0)]

    trainer = _toy_trainer(max_iters=1)
    trainer.register(Broken())
    with pytest.raises(OSError, match="disk full"):  # the only error: the run's
        trainer.train()


def test_gradient_norm_is_the_l2_norm_of_all_gradients():
    net, opt = _toy()
    train_step(opt, [(torch.randn(4, 3), torch.randn(4, 1))], _toy_loss(net))
    expected = torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item()
    assert gradient_norm(opt) == pytest.approx(expected, rel=1e-6)
    assert loss_tag("m2@ssh_reg_loss") == "loss/m2_reg" and loss_tag("other") == "loss/other"


def test_a_resumed_run_purges_the_events_beyond_its_snapshot(tmp_path):
    """Steps 1..5 logged, then a run resumed at 4 logs 5 and 6: TensorBoard shows 1..6 once each, 5 and 6 from
    the resumed run (without SummaryWriter's purge_step the old step 5 would stay beside the new one)."""
    for start, stop, lr in ((0, 5, 0.5), (4, 6, 0.25)):
        trainer = _toy_trainer(start_iter=start, max_iters=stop)
        trainer.register(LRSchedule(lambda it, lr=lr: lr), TensorBoard(tmp_path / "tb"))
        trainer.train()
    assert scalars(tmp_path / "tb")["lr"] == [(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5), (5, 0.25), (6, 0.25)]


def test_latest_cadence_every_k_steps_or_t_minutes():
    assert [k for k in range(1, 8) if LatestCadence(every=3).due(k, 0.0)] == [3, 6]
    assert not LatestCadence(minutes=2).due(5, 119.0) and LatestCadence(minutes=2).due(5, 120.0)
    assert LatestCadence(every=4, minutes=2).due(1, 500.0) and LatestCadence(every=4, minutes=2).due(4, 0.0)
    assert not LatestCadence().due(10, 1e9)


def test_sigint_requests_a_stop_and_a_second_one_interrupts():
    with StopOnSignals() as stop:
        assert stop() is None
        os.kill(os.getpid(), signal.SIGINT)
        assert stop() == "stopped"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_and_sigusr1_request_a_preemption_that_outranks_ctrl_c(sig, capsys):
    """A preemption (repeated: torchrun and SLURM may send it again) never interrupts; Ctrl-C does not weaken it."""
    before = signal.getsignal(sig)
    with StopOnSignals() as stop:
        os.kill(os.getpid(), sig)
        assert stop() == "preempted"
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop() == "preempted"
    assert signal.getsignal(sig) is before
    assert capsys.readouterr().err == (
        f"\n{sig.name}: preempted, stopping after this iteration and saving a snapshot.\n"
        "\nCtrl-C: stopping after this iteration and saving a snapshot (press again to abort).\n")


@pytest.mark.parametrize("saved, iter_size, world_size, items, error", [
    (2, 4, 1, 6, None),
    (2, 4, 4, 8, None),
    (1, 8, 8, 16, None),
    (3, 4, 3, 6, None),  # 3 x 1 = 3 images per step from the start: still that
    (2, 4, 3, 6, "it was trained with 4 images per SGD step (2 x 2, TRAIN.ITER_SIZE 4) and 3 processes would take "
                 "3, so the run would not continue the same training; resume it on 1 or 2 processes"),
    (3, 4, 1, 6, "it was trained with 3 images per SGD step (3 x 1, TRAIN.ITER_SIZE 4) and 1 process would take 4, "
                 "so the run would not continue the same training; resume it on 3 processes"),
    (2, 4, 4, 6, "its run dropped the last 0 of the 6 training items of each epoch and 4 processes would drop 2, "
                 "so the order of the images would change; resume it on 1 or 2 processes"),
    (1, 8, 4, 22, "its run dropped the last 0 of the 22 training items of each epoch and 4 processes would drop 2, "
                  "so the order of the images would change; resume it on 1 or 2 processes"),
    (1, 8, 3, 24, "it was trained with 8 images per SGD step (1 x 8, TRAIN.ITER_SIZE 8) and 3 processes would take "
                  "9, so the run would not continue the same training; resume it on 1, 2, 4 or 8 processes"),
])
def test_resume_split_error_allows_exactly_the_world_sizes_that_keep_each_step(saved, iter_size, world_size, items,
                                                                               error):
    assert resume_split_error(saved, iter_size, world_size, items) == error


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
    assert state.keys() == {"model", "optimizer", "scaler", "schedule", "iteration", "rng", "extra", "checksum"}
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

def _assert_same_state(a, b):
    """The snapshots `a` and `b` hold the same weights and momentum histories, bit for bit, at the same point."""
    a, b = (torch.load(path, weights_only=True) for path in (a, b))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    histories = [(s["history"], t["history"]) for s, t in zip(a["optimizer"]["state"].values(),
                                                               b["optimizer"]["state"].values(), strict=True)]
    assert len(histories) == 18 + 6 + 42 and all(torch.equal(h, g) for h, g in histories)
    assert (a["iteration"], a["extra"]["consumed"]) == (b["iteration"], b["extra"]["consumed"])


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


LOSS_TAGS = ["loss/total", "loss/m1_cls", "loss/m1_reg", "loss/m2_cls", "loss/m2_reg", "loss/m3_cls", "loss/m3_reg"]
SCALAR_TAGS = {*LOSS_TAGS, "lr", "grad_norm", "time/images_per_s", "time/step_s", "time/data_wait_s"}


def test_tensorboard_curves_and_detections_leave_the_training_unchanged(wider, tmp_path):
    """TensorBoard on (the default; --data with a val split adds detections on its photos every TRAIN.SNAPSHOT
    steps) and off (--no-tensorboard): the same snapshots, bit for bit. The event files, read back with
    tensorboard's EventAccumulator, hold every scalar of every step once, the losses and lr of metrics.jsonl."""
    data = tmp_path / "wider"
    shutil.copytree(wider, data)
    shutil.copytree(data / "WIDER_train", data / "WIDER_val")
    split = data / "wider_face_split"
    (split / "wider_face_val_bbx_gt.txt").write_text((split / "wider_face_train_bbx_gt.txt").read_text())
    common = ["--data", str(data), "--device", "cpu", "--workers", "0", *TINY, "--set", "TRAIN.SNAPSHOT", "2",
              "--iters", "3", "--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]
    on, off = tmp_path / "on", tmp_path / "off"
    assert train.main([*common, "--out", str(on)]) == 0
    assert train.main([*common, "--out", str(off), "--no-tensorboard"]) == 0
    for name in ("SSH_iter_2.pth", "SSH_iter_3.pth"):
        _assert_same_state(on / name, off / name)
    assert not (off / "tb").exists() and _losses(on / "metrics.jsonl") == _losses(off / "metrics.jsonl")

    curves = scalars(on / "tb")
    assert curves.keys() == SCALAR_TAGS
    assert all([step for step, _ in values] == [1, 2, 3] for values in curves.values())
    records = read_metrics(on / "metrics.jsonl")
    for tag, key in [("loss/total", "loss"), ("lr", "lr"), ("loss/m2_cls", "m2@ssh_cls_loss")]:
        assert [v for _, v in curves[tag]] == [pytest.approx(r[key], rel=1e-6) for r in records], tag
    assert all(v > 0 for _, v in curves["grad_norm"] + curves["time/images_per_s"])
    pictures = events(on / "tb")
    assert sorted(pictures.Tags()["images"]) == ["detections/0", "detections/1"]  # the two val photos
    (picture,) = pictures.Images("detections/0")
    assert (picture.step, picture.width, picture.height) == (2, 80, 64)


def test_resume_auto_skips_damaged_snapshots_and_continues_from_the_previous(wider, tmp_path, capsys):
    """A latest snapshot cut short and an empty newer kept one (as a crash of the machine can leave them):
    each skipped with a warning, the run continues from SSH_iter_2.pth and ends as an unbroken run."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--data", str(wider), "--device", "cpu", "--workers", "0", *TINY, "--set", "TRAIN.SNAPSHOT", "2"]
    assert train.main([*common, "--iters", "3", "--out", str(whole)]) == 0
    assert train.main([*common, "--iters", "2", "--out", str(split)]) == 0
    data = (whole / "SSH_iter_3.pth").read_bytes()
    (split / "SSH_latest.pth").write_bytes(data[:len(data) // 2])
    (split / "SSH_iter_3.pth").write_bytes(b"")
    capsys.readouterr()
    assert train.main([*common, "--iters", "3", "--out", str(split), "--resume", "auto"]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("warning:")] == [
        f"warning: skipping a snapshot that cannot be resumed: {split / 'SSH_latest.pth'}: cannot be read as a "
        f"training snapshot (damaged, truncated or another kind of file); moved aside to SSH_latest.pth.damaged",
        f"warning: skipping a snapshot that cannot be resumed: {split / 'SSH_iter_3.pth'}: empty file, not a "
        f"training snapshot; moved aside to SSH_iter_3.pth.damaged"]
    assert (f"--resume auto: continuing from {split / 'SSH_iter_2.pth'}, the newest snapshot in {split} that loads"
            in captured.out)
    _assert_same_state(whole / "SSH_iter_3.pth", split / "SSH_iter_3.pth")
    assert _losses(whole / "metrics.jsonl") == _losses(split / "metrics.jsonl")
    assert sorted(p.name for p in split.glob("*.pth")) == ["SSH_iter_2.pth", "SSH_iter_3.pth"]  # latest: removed
    assert sorted(p.name for p in split.glob("*.damaged")) == ["SSH_iter_3.pth.damaged", "SSH_latest.pth.damaged"]
    assert train.main([*common, "--iters", "4", "--out", str(split), "--resume", "auto"]) == 0
    assert "warning:" not in capsys.readouterr().err  # the damaged files are not tried, nor warned about, again


def test_nan_loss_after_a_latest_snapshot_names_it_as_the_last_good_one(wider, tmp_path, capsys):
    rc = train.main(["--data", str(wider), "--device", "cpu", "--workers", "0", "--out", str(tmp_path), *TINY,
                     "--set", "TRAIN.BASE_LR", "1e6", "--iters", "5", "--latest_every", "1"])
    assert rc == 3
    assert f"last good snapshot is {tmp_path / 'SSH_latest.pth'}" in capsys.readouterr().err
    assert [p.name for p in tmp_path.glob("*.pth")] == ["SSH_latest.pth"]
    assert torch.load(tmp_path / "SSH_latest.pth", weights_only=True)["iteration"] == 1


def test_drop_torn_line_keeps_whole_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert not drop_torn_line(path)
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n')
    assert not drop_torn_line(path) and path.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"itera')
    assert drop_torn_line(path) and path.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'
    path.write_text('{"itera')
    assert drop_torn_line(path) and path.read_text() == ""


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


def signal_a_training_run(wider, tmp_path, signum):
    """Start train.py (with a loader worker), send `signum` after its first logged step; returns
    (exit code, stdout, stderr)."""
    cmd = [sys.executable, "train.py", "--data", str(wider), "--device", "cpu", "--workers", "1",
           "--out", str(tmp_path), *TINY, "--iters", "1000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("iter 1/1000"):
                    break
            proc.send_signal(signum)
            out, _ = proc.communicate(timeout=120)
        finally:
            proc.kill()
        stderr.seek(0)
        return proc.returncode, out, stderr.read()


def test_ctrl_c_saves_a_snapshot_and_exits_cleanly(wider, tmp_path):
    """A real SIGINT to a running train.py (with a loader worker): snapshot, message, exit code 0."""
    returncode, out, err = signal_a_training_run(wider, tmp_path, signal.SIGINT)
    assert returncode == 0, err
    assert "Ctrl-C: stopping after this iteration" in err
    snapshots = list(tmp_path.glob("SSH_iter_*.pth"))
    assert len(snapshots) == 1, err
    state = torch.load(snapshots[0], weights_only=True)
    n = state["iteration"]
    assert 1 <= n < 1000 and state["extra"]["consumed"] == 2 * n
    assert f"Stopped at iteration {n}; continue with --resume {snapshots[0]}" in out
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["iteration"] == n


def test_sigusr1_saves_a_snapshot_and_exits_5_for_a_restart(wider, tmp_path):
    """SLURM's early warning (SIGUSR1; SIGTERM takes the same path) to a running train.py: the step finishes,
    a snapshot is written, exit code 5 (ExitCode.PREEMPTED) asks the supervisor for a restart."""
    returncode, out, err = signal_a_training_run(wider, tmp_path, signal.SIGUSR1)
    assert returncode == ExitCode.PREEMPTED == 5, err
    assert "SIGUSR1: preempted, stopping after this iteration and saving a snapshot." in err
    (snapshot,) = tmp_path.glob("SSH_iter_*.pth")
    n = torch.load(snapshot, weights_only=True)["iteration"]
    assert f"Preempted at iteration {n}, saved to {snapshot}; the same command with --resume auto continues" in out


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


# --- mixed precision on CPU ------------------------------------------------------------------------

def _tiny_run(wider, out, *extra, iters=2):
    """train.main on CPU (TINY, lr step after the first SGD step); returns the metrics records."""
    args = ["--data", str(wider), "--device", "cpu", "--workers", "0", "--out", str(out), *TINY,
            "--iters", str(iters), "--set", "TRAIN.STEPSIZE", "1", *extra]
    assert train.main(args) == 0
    return read_metrics(out / "metrics.jsonl")


LOSS_NAMES = ["m1@ssh_cls_loss", "m1@ssh_reg_loss", "m2@ssh_cls_loss", "m2@ssh_reg_loss", "m3@ssh_cls_loss",
              "m3@ssh_reg_loss"]
# Largest |loss difference| to the float32 run, per loss and step, allowed for bfloat16 autocast: measured
# 9.7e-4 (m3@ssh_cls_loss, step 1; 6.3e-4 at step 2) on this tiny set; bfloat16 keeps 8 significant bits.
BF16_LOSS_ATOL = 5e-3


def test_amp_on_cpu_trains_in_bfloat16_close_to_float32(wider, tmp_path):
    """train.py --amp on CPU: bfloat16 autocast (no GradScaler), 2 steps of 1 image; losses finite, not bitwise
    the float32 ones (autocast ran) but within BF16_LOSS_ATOL; the Caffe step policy lr 0.004, then 0.004 * 0.1."""
    one = ["--set", "TRAIN.ITER_SIZE", "1"]
    fp32 = _tiny_run(wider, tmp_path / "fp32", *one)
    amp = _tiny_run(wider, tmp_path / "amp", *one, "--amp")
    assert [r["lr"] for r in amp] == [r["lr"] for r in fp32] == [0.004, pytest.approx(0.0004, rel=1e-12)]
    for ours, ref in zip(amp, fp32, strict=True):
        for name in LOSS_NAMES:
            assert np.isfinite(ours[name]) and ours[name] == pytest.approx(ref[name], rel=0, abs=BF16_LOSS_ATOL), name
    assert any(amp[0][name] != fp32[0][name] for name in LOSS_NAMES)
    state = torch.load(tmp_path / "amp" / "SSH_iter_2.pth", weights_only=True)
    assert state["scaler"] == {}  # bfloat16 needs no loss scaling: the GradScaler is disabled
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state["model"].values())


# Largest |loss difference| to the float32 run allowed for float16 autocast (same weights, first step):
# measured 1.0e-4 (m3@ssh_cls_loss).
FP16_LOSS_ATOL = 2e-3


def test_fit_with_float16_autocast_runs_the_grad_scaler_on_cpu(wider, tmp_path, monkeypatch):
    """fit's float16 branch (CUDA without bfloat16) forced on CPU: an enabled GradScaler, its state in the
    snapshot. One SGD step of one 32 x 40 image (float16 convolutions are slow on CPU)."""
    small = ["--set", "TRAIN.SCALES", "[32]", "--set", "TRAIN.ITER_SIZE", "1"]
    fp32 = _tiny_run(wider, tmp_path / "fp32", *small, iters=1)
    monkeypatch.setattr(lib.training.run, "amp_dtype", lambda device: torch.float16)
    fp16 = _tiny_run(wider, tmp_path / "fp16", *small, "--amp", iters=1)
    for name in LOSS_NAMES:
        assert np.isfinite(fp16[0][name]) and fp16[0][name] == pytest.approx(fp32[0][name], rel=0,
                                                                             abs=FP16_LOSS_ATOL), name
    assert any(fp16[0][name] != fp32[0][name] for name in LOSS_NAMES)
    state = torch.load(tmp_path / "fp16" / "SSH_iter_1.pth", weights_only=True)
    # Enabled, starting at 2 ** 16: kept after a good step, halved after an overflow (the step skipped;
    # measured: 32768, float16 gradients of the random network overflow at 2 ** 16).
    assert state["scaler"]["scale"] in (65536.0, 32768.0) and state["scaler"]["backoff_factor"] == 0.5
    assert all(torch.isfinite(v).all() for v in state["model"].values())


class TinyHeads(torch.nn.Module):
    """A stand-in for SSH with its head layout (N x 4 / N x 8 maps at strides 8, 16, 32), cheap in float16."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.heads = torch.nn.ModuleDict({m: torch.nn.Conv2d(8, 12, 1) for m in ("m1", "m2", "m3")})

    def forward(self, x):
        x = torch.relu(self.trunk(x))
        out = {}
        for name, head in self.heads.items():
            y = head(x)
            out[name] = (y[:, :4], y[:, 4:])
            x = torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        return out


# Relative difference |step with GradScaler - step without| / |step without| (L2 over all parameters)
# allowed under float16 autocast: measured 7.2e-6 at scale 1024 (6.6e-6 at 16). The scale is a power of two,
# so the two differ only where unscaled float16 gradients lose bits to underflow; for comparison, the
# float16 and float32 steps differ by 6.1e-4.
FP16_SCALED_STEP_RTOL = 1e-4


def test_grad_scaler_step_on_cpu_equals_the_unscaled_step_and_skips_an_inf_gradient():
    """lib.training.train_step with torch.amp.GradScaler("cpu") and float16 autocast, real SSH losses."""
    settings = LossSettings.from_config(get_config())
    torch.manual_seed(0)
    net = TinyHeads()
    start = copy.deepcopy(net.state_dict())
    gen = torch.Generator().manual_seed(0)
    items = [{"data": torch.rand(3, 96, 128, generator=gen) * 255 - 120, "gt_boxes": torch.tensor(box)}
             for box in ([[10.0, 12, 34, 40]], [[20.0, 8, 67, 59], [70, 30, 101, 61]])]

    def step(scaler):
        net.load_state_dict(start)
        opt = CaffeSGD([{"params": list(net.parameters()), "lr_mult": 1}], lr=0.1, momentum=0.9, weight_decay=5e-4)
        losses = train_step(opt, items, lambda item: image_losses(net, item, settings, "cpu", torch.float16), scaler)
        return losses, opt, {k: v.clone() for k, v in net.state_dict().items()}

    plain_losses, _, plain = step(None)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaled_losses, _, scaled = step(scaler)
    assert plain_losses["m1@ssh_reg_loss"] > 0 and plain_losses["m2@ssh_reg_loss"] > 0
    assert scaled_losses == plain_losses  # the forward pass does not see the scale
    assert scaler.get_scale() == 1024.0  # no inf: the step was taken and the scale kept
    update = torch.cat([(plain[k] - start[k]).flatten() for k in start])
    diff = torch.cat([(scaled[k] - plain[k]).flatten() for k in start])
    assert update.norm() > 0
    assert diff.norm() <= FP16_SCALED_STEP_RTOL * update.norm(), (diff.norm() / update.norm()).item()

    # An inf gradient (finite losses): the scaler skips the optimizer step and halves the scale.
    hook = net.heads["m2"].bias.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    try:
        losses, opt, after = step(scaler)
    finally:
        hook.remove()
    assert losses == plain_losses
    assert all(torch.equal(after[k], start[k]) for k in start)
    assert not opt.state  # no momentum history either
    assert scaler.get_scale() == 512.0  # GradScaler's backoff_factor 0.5


def test_amp_autocasts_to_bfloat16_on_the_cpu():
    """--amp on the CPU is bf16 (no GradScaler needed); fp16 + GradScaler is for GPUs without bf16."""
    assert amp_dtype("cpu") == torch.bfloat16
