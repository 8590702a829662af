"""lib/utils/checkpoint.py: which snapshot --resume auto continues from, and what counts as damaged."""
import pytest
import torch

from lib.utils.checkpoint import latest_name, newest_snapshot, save_snapshot, verify_snapshot

CONFIG = {"TRAIN": {"SNAPSHOT": 2}}


def write(path, iteration, config=CONFIG):
    """A complete snapshot of a small network at `iteration` (weights 1234.5), recording `config`; returns its path."""
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(1234.5)
    return save_snapshot(path, model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), iteration=iteration,
                         schedule={}, extra={"consumed": 2 * iteration, "config": config})


def cut(path, fraction=0.5):
    """Keep the first `fraction` of the file's bytes, as a copy that stopped half-way would."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def test_the_newest_snapshot_wins_whether_kept_or_latest(tmp_path):
    for n in (2, 4, 10):
        write(tmp_path / f"SSH_iter_{n}.pth", n)
    write(tmp_path / "SSH_latest.pth", 7)
    assert newest_snapshot(tmp_path, "SSH") == (tmp_path / "SSH_iter_10.pth", [])
    (tmp_path / "SSH_iter_10.pth").unlink()
    assert newest_snapshot(tmp_path, "SSH") == (tmp_path / "SSH_latest.pth", [])


def test_only_this_runs_prefix_counts(tmp_path):
    """Snapshots of another SNAPSHOT_INFIX, leftovers of interrupted writes and other files are not candidates."""
    write(tmp_path / "SSH_iter_3.pth", 3)
    write(tmp_path / "SSH_other_iter_9.pth", 9)
    write(tmp_path / "SSH_other_latest.pth", 8)
    write(tmp_path / ".SSH_iter_5.pth.abcd1234.atomic-tmp.pth", 5)
    write(tmp_path / "SSH_iter_5.pth.bak", 5)
    assert newest_snapshot(tmp_path, "SSH") == (tmp_path / "SSH_iter_3.pth", [])
    assert newest_snapshot(tmp_path, "SSH_other") == (tmp_path / "SSH_other_iter_9.pth", [])
    assert latest_name("SSH_other") == "SSH_other_latest.pth"


def test_damaged_snapshots_are_skipped_newest_first(tmp_path):
    """A cut latest (its iteration unknown, so tried first), an empty and a mislabelled kept one: the previous wins."""
    write(tmp_path / "SSH_iter_2.pth", 2)
    cut(write(tmp_path / "SSH_latest.pth", 5))
    (tmp_path / "SSH_iter_4.pth").write_bytes(b"")
    write(tmp_path / "SSH_iter_3.pth", 6)
    assert newest_snapshot(tmp_path, "SSH") == (tmp_path / "SSH_iter_2.pth", [
        f"{tmp_path / 'SSH_latest.pth'}: cannot be read as a training snapshot (damaged, truncated or another kind "
        f"of file)",
        f"{tmp_path / 'SSH_iter_4.pth'}: empty file, not a training snapshot",
        f"{tmp_path / 'SSH_iter_3.pth'}: holds iteration 6, not the 3 of its name",
    ])


def test_damaged_snapshots_are_moved_aside_once(tmp_path):
    """With move_damaged the skipped files are renamed (never deleted, never overwritten), so the next resume
    neither tries nor warns about them again."""
    write(tmp_path / "SSH_iter_2.pth", 2)
    cut(write(tmp_path / "SSH_latest.pth", 5))
    (tmp_path / "SSH_iter_4.pth").write_bytes(b"")
    (tmp_path / "SSH_iter_4.pth.damaged").write_bytes(b"an earlier one")
    path, skipped = newest_snapshot(tmp_path, "SSH", move_damaged=True)
    assert path == tmp_path / "SSH_iter_2.pth"
    assert skipped == [
        f"{tmp_path / 'SSH_latest.pth'}: cannot be read as a training snapshot (damaged, truncated or another kind "
        "of file); moved aside to SSH_latest.pth.damaged",
        f"{tmp_path / 'SSH_iter_4.pth'}: empty file, not a training snapshot; moved aside to SSH_iter_4.pth.damaged.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "SSH_iter_2.pth", "SSH_iter_4.pth.damaged", "SSH_iter_4.pth.damaged.2", "SSH_latest.pth.damaged"]
    assert (tmp_path / "SSH_iter_4.pth.damaged").read_bytes() == b"an earlier one"
    assert newest_snapshot(tmp_path, "SSH", move_damaged=True) == (tmp_path / "SSH_iter_2.pth", [])


def test_a_snapshot_with_a_damaged_weight_is_skipped(tmp_path):
    """A flipped bit inside a tensor: torch.load reads it without complaint, the checksum does not match."""
    write(tmp_path / "SSH_iter_2.pth", 2)
    path = write(tmp_path / "SSH_latest.pth", 3)
    data = bytearray(path.read_bytes())
    data[data.find(torch.tensor([1234.5]).numpy().tobytes()) + 1] ^= 1
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["model"]["weight"][0, 0] != 1234.5  # it loads, damaged
    assert newest_snapshot(tmp_path, "SSH") == (tmp_path / "SSH_iter_2.pth", [
        f"{path}: its weights or momentum differ from the checksum written with them (damaged)"])


def test_no_loadable_snapshot_means_a_new_run(tmp_path):
    assert newest_snapshot(tmp_path, "SSH") == (None, [])
    assert newest_snapshot(tmp_path / "absent", "SSH") == (None, [])
    write(tmp_path / "SSH_iter_1.pth", 1, config=None)
    assert newest_snapshot(tmp_path, "SSH") == (None, [
        f"{tmp_path / 'SSH_iter_1.pth'}: the snapshot records no training config, so its run cannot be resumed"])


def test_verify_snapshot_returns_the_iteration(tmp_path):
    assert verify_snapshot(write(tmp_path / "SSH_latest.pth", 12)) == 12
    with pytest.raises(ValueError, match=r"SSH_latest.pth: holds iteration 12, not the 11 of its name$"):
        verify_snapshot(tmp_path / "SSH_latest.pth", 11)
