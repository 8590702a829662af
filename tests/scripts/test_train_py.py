"""train.py when things go wrong: resumed config, --resume auto after kill -9, output-folder lock,
leftovers of killed writes, unreadable images, and every error path ending in one `error:` line with
exit code 2."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from wider_fixtures import tiny_wider

import train
from lib.datasets import EpochSampler
from lib.training.metrics import read_metrics
from lib.utils.atomic import TEMP_MARKER, atomic_path, is_temp_name, remove_stale_temps
from lib.utils.checkpoint import save_snapshot, snapshot_config
from lib.utils.exit_codes import ExitCode
from lib.utils.lock import LOCK_NAME, FolderLocked, folder_lock
from shared import ROOT as REPO
from tb_events import scalars

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# Tiny fast runs: 64-pixel blobs, 2 images per SGD step, one log line per step.
TINY = ["--device", "cpu", "--init", "none", "--workers", "0", "--set", "TRAIN.SCALES", "[64]",
        "--set", "TRAIN.MAX_SIZE", "96", "--set", "TRAIN.ITER_SIZE", "2", "--set", "TRAIN.DISPLAY", "1"]


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """A WIDER-layout folder with three random 64x80 images and one face box each (6 items with flips)."""
    return tiny_wider(tmp_path_factory.mktemp("wider"), 3, seed=2, x0=9, dx=7, y0=11)


@pytest.fixture(scope="module")
def snapshot(wider, tmp_path_factory):
    """SSH_iter_1.pth of a one-step TINY run."""
    out = tmp_path_factory.mktemp("snapshot")
    assert train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(out)]) == 0
    return out / "SSH_iter_1.pth"


def damage_huffman_table(path):
    """Overwrite the code counts of the first Huffman table of the JPEG at `path`: its header still
    reads (PIL: same size), but OpenCV cannot decode it."""
    data = bytearray(Path(path).read_bytes())
    start = data.find(b"\xff\xc4") + 5
    data[start:start + 16] = b"\xff" * 16
    Path(path).write_bytes(bytes(data))


def hold(code, ready="ready"):
    """A Python subprocess (in the repo) running `code`, returned once it printed `ready`."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == ready
    return proc


# --- snapshots: what --resume reads first -------------------------------------------------------

def test_snapshot_config_is_read_and_bad_snapshots_are_one_sentence(snapshot, tmp_path):
    assert snapshot_config(snapshot)["TRAIN"]["SCALES"] == [64]
    (tmp_path / "zero.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello\n")
    (tmp_path / "cut.pth").write_bytes(snapshot.read_bytes()[:5000])
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "weights.pth")
    net = torch.nn.Linear(2, 1)
    save_snapshot(tmp_path / "old.pth", model=net, optimizer=torch.optim.SGD(net.parameters(), lr=1),
                  iteration=1, schedule={}, extra={"consumed": 2})
    expected = {
        "missing.pth": f"snapshot not found: {tmp_path / 'missing.pth'}",
        "zero.pth": f"{tmp_path / 'zero.pth'}: empty file, not a training snapshot",
        "text.pth": f"{tmp_path / 'text.pth'}: cannot be read as a training snapshot (damaged, truncated or "
                    f"another kind of file)",
        "cut.pth": f"{tmp_path / 'cut.pth'}: cannot be read as a training snapshot (damaged, truncated or "
                   f"another kind of file)",
        "weights.pth": f"{tmp_path / 'weights.pth'}: not a training snapshot (missing iteration, model, optimizer, "
                       f"rng, schedule)",
        "old.pth": f"{tmp_path / 'old.pth'}: the snapshot records no training config, so its run cannot be resumed",
    }
    for name, message in expected.items():
        with pytest.raises(ValueError) as raised:
            snapshot_config(tmp_path / name)
        assert str(raised.value) == message


def test_resume_trains_with_the_snapshots_config(wider, snapshot, tmp_path, capsys):
    """Resumed without the --set of the first run, it still trains at TRAIN.SCALES [64], 2 images per step."""
    out = tmp_path / "out"
    rc = train.main(["--data", str(wider), "--device", "cpu", "--workers", "0", "--resume", str(snapshot),
                     "--iters", "2", "--out", str(out), "--set", "TRAIN.DISPLAY", "5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"note: overriding the config of {snapshot}: TRAIN.DISPLAY: 1 -> 5 (log cadence only)" in captured.out
    state = torch.load(out / "SSH_iter_2.pth", weights_only=True)
    assert state["extra"]["config"]["TRAIN"]["SCALES"] == [64] and state["extra"]["consumed"] == 4
    assert state["extra"]["config"]["TRAIN"]["DISPLAY"] == 5


def test_resume_refuses_a_changed_training_setting(wider, snapshot, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        train.main(["--data", str(wider), "--resume", str(snapshot), "--out", str(tmp_path),
                    "--set", "TRAIN.SCALES", "[1200]"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: --cfg/--set would change TRAIN.SCALES from the snapshot's [64] to [1200]; a resumed run keeps "
        "the settings its snapshot was trained with (drop the override, or start a new run in another --out)\n")
    assert not list(tmp_path.iterdir())


def test_resume_auto_in_a_folder_without_snapshots_starts_a_new_run(wider, snapshot, tmp_path, capsys):
    assert train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(tmp_path), "--resume", "auto"]) == 0
    assert f"--resume auto: no snapshot in {tmp_path} loads, so this is a new run\n" in capsys.readouterr().out
    a, b = (torch.load(path, weights_only=True)["model"] for path in (snapshot, tmp_path / "SSH_iter_1.pth"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_auto_refuses_a_changed_training_setting(snapshot, tmp_path, capsys):
    (tmp_path / snapshot.name).write_bytes(snapshot.read_bytes())
    with pytest.raises(SystemExit) as exited:
        train.main(["--resume", "auto", "--out", str(tmp_path), *TINY, "--set", "TRAIN.BASE_LR", "0.1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: --cfg/--set would change TRAIN.BASE_LR from the snapshot's 0.004 to 0.1; a resumed run keeps "
        "the settings its snapshot was trained with (drop the override, or start a new run in another --out)\n")


def test_resume_refuses_a_world_size_that_changes_the_images_per_step(wider, snapshot, tmp_path, capsys):
    """A snapshot of 2 processes x 2 images (TRAIN.ITER_SIZE 3 rounds to 2 each) cannot go on with 1 x 3."""
    state = torch.load(snapshot, weights_only=True)
    state["extra"]["world_size"] = 2
    state["extra"]["config"]["TRAIN"]["ITER_SIZE"] = 3
    path = tmp_path / "SSH_iter_1.pth"
    torch.save(state, path)
    assert train.main(["--data", str(wider), "--device", "cpu", "--workers", "0", "--resume", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: it was trained with 4 images per SGD step (2 x 2, TRAIN.ITER_SIZE 3) and 1 process would "
        f"take 3, so the run would not continue the same training; resume it on 2 processes\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SSH_iter_1.pth"]


def kill_at(cmd, step):
    """Run `cmd` (train.py) and kill -9 it once it has printed the log line of iteration `step`."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith(f"iter {step}/"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _steps(out):
    """The records of out/metrics.jsonl without their clock readings."""
    records = read_metrics(out / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in records]


def test_kill_9_then_the_same_command_ends_with_the_weights_of_an_unbroken_run(wider, tmp_path):
    """train.py --resume auto --latest-every 1, killed at a (seeded) random step and started again as it was:
    at most one step is computed again, and weights, momentum and metrics equal those of an unbroken run. The
    TensorBoard event files of both runs, read back with EventAccumulator, show every step once, the killed
    run's steps beyond its snapshot purged: the same losses and lr as the unbroken run."""
    step = random.Random(15).randint(2, 4)
    broken, whole = tmp_path / "broken", tmp_path / "whole"

    def command(out):
        return [sys.executable, "train.py", "--data", str(wider), *TINY, "--iters", "6", "--set", "TRAIN.SNAPSHOT",
                "4", "--latest-every", "1", "--resume", "auto", "--out", str(out)]

    kill_at(command(broken), step)
    assert not (broken / "SSH_iter_6.pth").exists()
    again = subprocess.run(command(broken), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    start = int(re.search(r"^Training 6 images from iteration (\d+) to 6", again.stdout, re.M)[1])
    assert step - 1 <= start < 6
    assert "--resume auto: continuing from " in again.stdout
    unbroken = subprocess.run(command(whole), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    assert f"--resume auto: no snapshot in {whole} loads, so this is a new run" in unbroken.stdout

    a, b = (torch.load(out / "SSH_iter_6.pth", weights_only=True) for out in (whole, broken))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(s["history"], t["history"]) for s, t in zip(a["optimizer"]["state"].values(),
                                                                       b["optimizer"]["state"].values(), strict=True))
    assert _steps(broken) == _steps(whole) and [r["iteration"] for r in _steps(broken)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in broken.iterdir()) == sorted(p.name for p in whole.iterdir()) == sorted([
        "SSH_iter_4.pth", "SSH_iter_6.pth", "loss_curve.png", "metrics.jsonl", "tb"])  # no lock file left
    curves, expected = scalars(broken / "tb"), scalars(whole / "tb")
    assert len(list((broken / "tb").iterdir())) == 2 and curves.keys() == expected.keys()  # an event file per run
    for tag, values in curves.items():
        assert [step for step, _ in values] == [1, 2, 3, 4, 5, 6], tag
        if tag.startswith("loss/") or tag == "lr":
            assert values == expected[tag], tag


# --- the output folder's lock ---------------------------------------------------------------------

def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with folder_lock(tmp_path) as path:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(FolderLocked) as raised:
            with folder_lock(tmp_path):
                pass
        assert str(raised.value) == (f"{tmp_path} is in use by another run (pid {os.getpid()} on "
                                     f"{socket.gethostname()}, started {info['started']}; lock file {path})")
    assert not path.exists()  # released and removed at the end of the block
    with pytest.raises(KeyboardInterrupt):
        with folder_lock(tmp_path):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # also when the block fails


def test_a_second_train_run_on_the_same_out_exits_2_and_touches_nothing(wider, tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1}\n')
    with folder_lock(tmp_path):
        rc = train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(tmp_path)])
        assert {p.name for p in tmp_path.iterdir()} == {LOCK_NAME, "metrics.jsonl"}  # the refused run left ours
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is in use by another run (pid {os.getpid()} on ") and err.count("\n") == 1
    assert (tmp_path / "metrics.jsonl").read_text() == '{"iteration": 1}\n'


def test_kill_9_mid_write_leaves_a_marked_temp_the_next_run_removes(wider, tmp_path, capsys):
    """A writer killed while holding the lock: its lock is taken over silently, its temp file removed."""
    out = tmp_path / "out"
    proc = hold(f"import time\nfrom lib.utils.atomic import atomic_path\nfrom lib.utils.lock import folder_lock\n"
                f"with folder_lock({str(out)!r}), atomic_path({str(out / 'SSH_iter_7.pth')!r}) as tmp:\n"
                f"    tmp.write_bytes(b'half a snapshot')\n    print('ready', flush=True)\n    time.sleep(60)\n")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (temp,) = [p.name for p in out.iterdir() if p.name != LOCK_NAME]
    assert temp.startswith(".SSH_iter_7.pth.") and temp.endswith(TEMP_MARKER + ".pth")
    legacy = ".SSH_iter_3.pth.k2j3h4g5.pth"  # a leftover of the versions before TEMP_MARKER
    for name in (legacy, ".notes.pth", "notes.txt"):
        (out / name).write_text("x")
    assert train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(out)]) == 0
    assert (f"Removed 2 temporary file(s) of interrupted writes from {out}: {legacy}, {temp}\n"
            in capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} == {".notes.pth", "notes.txt", "SSH_iter_1.pth", "metrics.jsonl",
                                             "loss_curve.png", "tb"}  # the dead run's lock taken over, then removed


def test_temps_are_not_removed_while_another_run_holds_the_folder(wider, tmp_path):
    with atomic_path(tmp_path / "SSH_iter_5.pth") as tmp:
        tmp.write_bytes(b"being written")
        with folder_lock(tmp_path):
            assert train.main(["--data", str(wider), *TINY, "--iters", "1", "--out", str(tmp_path)]) == 2
        assert tmp.read_bytes() == b"being written"


def test_temp_names_are_marked_and_keep_the_suffix(tmp_path):
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        assert tmp.name.startswith(".clip.mp4.") and tmp.name.endswith(TEMP_MARKER + ".mp4") and tmp.parent == tmp_path
        assert is_temp_name(tmp.name)
    for name in (".a.pth.abcd1234.pth", ".a.abcd1234.tmp", f".dets.abcd1234{TEMP_MARKER}"):
        assert is_temp_name(name), name
    for name in (".bashrc", ".a.pth.abcd1234.png", ".a.pth.abc.pth", "a.pth.abcd1234.pth", LOCK_NAME):
        assert not is_temp_name(name), name
    (tmp_path / f".dets.abcd1234{TEMP_MARKER}").mkdir()
    assert remove_stale_temps(tmp_path) == [f".dets.abcd1234{TEMP_MARKER}"]
    assert remove_stale_temps(tmp_path / "absent") == []


# --- unreadable images ------------------------------------------------------------------------------

def _first_appearance(num_images, iter_size, seed=3):
    """(image index that first appears after step 1, steps completed before it) of the epoch-0 order."""
    order = [i % num_images for i in EpochSampler(2 * num_images, seed).permutation(0).tolist()]
    seen = set(order[:iter_size])
    k = next(k for k, image in enumerate(order) if image not in seen)
    return order[k], k // iter_size


def test_an_image_failing_mid_training_saves_the_last_step(tmp_path, capsys):
    """exit 2 with one line naming the file, the last completed step saved; fixed, the run resumes exactly."""
    data = tiny_wider(tmp_path / "wider", 3, seed=2, x0=9, dx=7, y0=11)
    images = data / "WIDER_train" / "images" / "0--Test"
    bad, done = _first_appearance(3, 2)
    assert done >= 1
    original = (images / f"img{bad}.jpg").read_bytes()
    damage_huffman_table(images / f"img{bad}.jpg")
    common = ["--data", str(data), *TINY, "--workers", "1", "--iters", str(done + 1)]
    rc = train.main([*common, "--out", str(tmp_path / "split")])
    captured = capsys.readouterr()
    assert rc == 2
    snap = tmp_path / "split" / f"SSH_iter_{done}.pth"
    assert captured.err.endswith(f"error: {images / f'img{bad}.jpg'}: not an image OpenCV can decode "
                                 f"(damaged, or not an image)\n")
    assert "Traceback" not in captured.err and "worker" not in captured.err
    assert f"Continue with --resume {snap}" in captured.out
    assert torch.load(snap, weights_only=True)["extra"]["consumed"] == 2 * done

    (images / f"img{bad}.jpg").write_bytes(original)
    assert train.main([*common, "--out", str(tmp_path / "split"), "--resume", str(snap)]) == 0
    assert train.main([*common, "--out", str(tmp_path / "whole")]) == 0
    a, b = (torch.load(tmp_path / run / f"SSH_iter_{done + 1}.pth", weights_only=True) for run in ("whole", "split"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["iteration"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")] == list(range(1, done + 2))


# --- the command line ----------------------------------------------------------------------------

def test_options_are_hyphenated_and_their_underscore_spellings_still_work(capsys):
    for flags in (["--latest-every", "3", "--latest-minutes=0.5", "--no-tensorboard"],
                  ["--latest_every", "3", "--latest_minutes=0.5", "--no_tensorboard"]):
        args = train.parse_args(flags)
        assert (args.latest_every, args.latest_minutes, args.no_tensorboard) == (3, 0.5, True)
    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--latest-every" in text and not re.search(r"--[a-z-]+_", text)  # the aliases are hidden
    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--latest_every", "-1"])
    assert exited.value.code == ExitCode.BAD_INPUT
    assert capsys.readouterr().err == "error: argument --latest-every: must be at least 0, got -1\n"


# --- every error path of the command line: one `error:` line, exit code 2, no traceback ------------

def _error_cases(wider, snapshot, tmp):
    """{case: (train.py arguments, text expected in the error line)}; files they need are written to `tmp`."""
    (tmp / "bad.yml").write_text("TRAIN: [\n")
    (tmp / "zero.pth").write_bytes(b"")
    (tmp / "text.pth").write_text("not a snapshot\n")
    torch.save({"weight": torch.zeros(1)}, tmp / "weights.pth")
    broken = tiny_wider(tmp / "broken", 2, seed=0, x0=10, dx=5, y0=12)
    (broken / "WIDER_train" / "images" / "0--Test" / "img1.jpg").write_bytes(b"")
    data = ["--data", str(wider)]
    cases = {
        "missing --cfg": (["--cfg", str(tmp / "nope.yml")], f"config file not found: {tmp / 'nope.yml'}"),
        "bad YAML": (["--cfg", str(tmp / "bad.yml")], "bad.yml: not a valid YAML config"),
        "unknown key": (["--set", "TRAIN.NOPE", "1"], "unknown config key TRAIN.NOPE"),
        "wrong type": (["--set", "TRAIN.USE_FLIPPED", "3"], "config key TRAIN.USE_FLIPPED: expected true/false"),
        "unparsable value": (["--set", "TRAIN.SCALES", "[1"], "config key TRAIN.SCALES: cannot parse the value"),
        "--device gpu": ([*data, "--device", "gpu", "--init", "none"], "unknown device 'gpu'"),
        "missing --data": (["--data", str(tmp / "nowhere"), "--init", "none"],
                           "wider_face_train_bbx_gt.txt: No such file or directory"),
        "missing --init": ([*data, "--init", str(tmp / "VGG16.caffemodel")], "make fetch-imagenet"),
        "unreadable image": (["--data", str(broken), "--init", "none"], "img1.jpg: cannot read the image header"),
        "--resume missing": ([*data, "--resume", str(tmp / "gone.pth")], "snapshot not found"),
        "--resume zero-byte": ([*data, "--resume", str(tmp / "zero.pth")], "empty file, not a training snapshot"),
        "--resume text": ([*data, "--resume", str(tmp / "text.pth")], "cannot be read as a training snapshot"),
        "--resume weights": ([*data, "--resume", str(tmp / "weights.pth")], "not a training snapshot (missing"),
        "--resume changed": ([*data, "--resume", str(snapshot), "--set", "TRAIN.BASE_LR", "0.1"],
                             "would change TRAIN.BASE_LR from the snapshot's 0.004 to 0.1"),
        "locked --out": ([*data, *TINY, "--out", str(tmp / "locked")], f"is in use by another run (pid {os.getpid()}"),
        "--iters -1": ([*data, "--iters", "-1"], "argument --iters: must be at least 1, got -1"),
        "--workers -1": ([*data, "--workers", "-1"], "argument --workers: must be at least 0, got -1"),
        "--iters x": ([*data, "--iters", "x"], "argument --iters: expected a whole number, got 'x'"),
    }
    if not torch.cuda.is_available():
        cases["--device cuda"] = ([*data, "--device", "cuda", "--init", "none"], "no CUDA GPU is available here")
    return cases


@pytest.fixture(scope="module")
def error_runs(wider, snapshot, tmp_path_factory):
    """{case: (expected text, CompletedProcess)} of every error case, run 4 at a time."""
    tmp = tmp_path_factory.mktemp("errors")
    cases = _error_cases(wider, snapshot, tmp)

    def run(args):
        return subprocess.run([sys.executable, "train.py", "--out", str(tmp / "out"), *args], cwd=REPO, env=ENV,
                              capture_output=True, text=True, timeout=120)

    with folder_lock(tmp / "locked"), ThreadPoolExecutor(4) as pool:
        done = dict(zip(cases, pool.map(run, [args for args, _ in cases.values()])))
    return {case: (expected, done[case]) for case, (_, expected) in cases.items()}


def test_every_error_path_is_one_line_and_exit_code_2(error_runs):
    for case, (expected, proc) in error_runs.items():
        assert proc.returncode == 2, (case, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (case, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if "error: " in line]
        assert len(errors) == 1 and expected in errors[0], (case, proc.stderr[-2000:])
    assert len(error_runs) >= 18
