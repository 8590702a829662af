"""lib/utils/integrity.py: records hold size and SHA-256; a flipped byte, a truncation or an
unreadable record is refused with a message naming the file, the record and what to run."""
import hashlib
import json
import os

import pytest

from lib.utils.integrity import IntegrityError, check_record, read_record, record_path, write_record

DATA = os.urandom(100_000)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(DATA)
    write_record(path, verified_by="strict load", remake="python3 -m model.weights ssh")
    return path


def test_record_holds_size_hash_how_and_when(weights):
    record = json.loads(record_path(weights).read_text())
    assert record_path(weights).name == "w.caffemodel.sha256.json"
    assert record["file"] == "w.caffemodel" and record["size"] == len(DATA)
    assert record["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert record["verified_by"] == "strict load" and record["remake"] == "python3 -m model.weights ssh"
    assert record["verified_at"].endswith("Z") and record["verified_at"][:2] == "20"
    assert check_record(weights) == record


def test_flipped_byte_is_refused(weights):
    data = bytearray(DATA)
    data[500] ^= 0x80
    weights.write_bytes(data)
    message = (f"{weights} has SHA-256 {hashlib.sha256(data).hexdigest()} but its integrity record "
               f"{record_path(weights)} says {hashlib.sha256(DATA).hexdigest()} (damaged or replaced): delete "
               f"{weights} and {record_path(weights)} and run `python3 -m model.weights ssh` to get it again")
    with pytest.raises(IntegrityError) as e:
        check_record(weights)
    assert str(e.value) == message


def test_truncation_is_refused_by_size(weights):
    weights.write_bytes(DATA[:-1])
    with pytest.raises(IntegrityError, match=f"is {len(DATA) - 1} bytes but its integrity record .* says {len(DATA)} "
                                             r"\(truncated or replaced\)"):
        check_record(weights)


def test_no_record_nothing_to_check_and_unreadable_record_refused(tmp_path, weights):
    other = tmp_path / "other.pth"
    other.write_bytes(b"x")
    assert read_record(other) is None and check_record(other) is None
    record_path(weights).write_text("{not json")
    with pytest.raises(IntegrityError, match="is not a readable integrity record"):
        check_record(weights)
