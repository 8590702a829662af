"""Config defaults equal the official default_config.yml; YAML merging, --set overrides, resume rules."""
import argparse
import json
from pathlib import Path

import pytest

from lib.config import (RESUME_OVERRIDABLE, add_config_args, config_from_args, flat_config, get_config, merge_yaml,
                        resume_config, set_key)

ROOT = Path(__file__).resolve().parents[1]


def test_official_defaults():
    cfg = get_config()
    assert cfg.TRAIN.SCALES == [1200] and cfg.TRAIN.MAX_SIZE == 1600
    assert cfg.TRAIN.ANCHORS_PER_BATCH == 256 and cfg.TRAIN.ANCHOR_FG_FRACTION == 0.25
    assert (cfg.TRAIN.ANCHOR_POSITIVE_OVERLAP, cfg.TRAIN.ANCHOR_NEGATIVE_OVERLAP) == (0.5, 0.3)
    assert cfg.TRAIN.HARD_POSITIVE_MINING and not cfg.TRAIN.FORCE_FG_FOR_EACH_GT
    assert (cfg.TEST.NMS_THRESH, cfg.TEST.N_DETS_PER_MODULE, cfg.TEST.ANCHOR_MIN_SIZE) == (0.3, 1000, 0)
    assert cfg.PIXEL_MEANS == [[[102.9801, 115.9465, 122.7717]]] and cfg.RNG_SEED == 3
    assert (cfg.TRAIN.BASE_LR, cfg.TRAIN.STEPSIZE, cfg.TRAIN.MAX_ITERS) == (0.004, 18000, 21000)


def test_defaults_are_fresh_copies():
    a = get_config()
    a.TEST.SCALES.append(5)
    assert get_config().TEST.SCALES == [1200]


def test_official_yaml_with_python_tuples(tmp_path):
    # the official SSH/configs/wider_pyramid.yml, verbatim
    f = tmp_path / "wider_pyramid.yml"
    f.write_text("EXP_DIR: ssh_pyramid\nTEST:\n  SCALES: !!python/tuple [500,800,1200,1600,]\n"
                 "  PYRAMID_BASE_SIZE: !!python/tuple [800,1200]\n  MAX_SIZE: -1\n")
    cfg = get_config([f])
    assert cfg.EXP_DIR == "ssh_pyramid" and cfg.TEST.SCALES == [500, 800, 1200, 1600]
    assert cfg.TEST.MAX_SIZE == -1 and cfg.TRAIN.SCALES == [1200]


def test_shipped_configs():
    assert get_config([ROOT / "configs/wider.yml"]).TRAIN.SNAPSHOT == 1000
    assert get_config([ROOT / "configs/wider_pyramid.yml"]).TEST.SCALES == [500, 800, 1200, 1600]


def test_bad_yaml_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yml"
    f.write_text("TEST:\n  NMS_THRES: 0.4\n")
    with pytest.raises(ValueError, match=r"bad.yml: unknown config key TEST.NMS_THRES"):
        merge_yaml(get_config(), f)
    f.write_text("TRAIN:\n  USE_FLIPPED: 3\n")
    with pytest.raises(ValueError, match="TRAIN.USE_FLIPPED"):
        merge_yaml(get_config(), f)


def test_unreadable_config_files_give_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^config file not found: .*absent.yml$"):
        merge_yaml(get_config(), tmp_path / "absent.yml")
    f = tmp_path / "broken.yml"
    f.write_text("TEST:\n  SCALES: [800\n")
    with pytest.raises(ValueError) as info:
        merge_yaml(get_config(), f)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{f}: not a valid YAML config (") and "at line 3, column 1" in str(info.value)
    f.write_bytes(b"TEST: \xff\xfe\n")
    with pytest.raises(ValueError, match="broken.yml: cannot read the config file"):
        merge_yaml(get_config(), f)


def test_set_overrides():
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--set", "TEST.SCALES", "[800]", "--set", "TEST.NMS_THRESH", "0.4",
                              "--set", "EXP_DIR", "mine"])
    cfg = config_from_args(args)
    assert cfg.TEST.SCALES == [800] and cfg.TEST.NMS_THRESH == 0.4 and cfg.EXP_DIR == "mine"
    with pytest.raises(KeyError):
        set_key(cfg, "TEST.NOPE", "1")


# --- resuming: the snapshot's config, overrides allowed only where they cannot change training ----

def _saved(**train):
    """A snapshot's recorded config (plain nested dict, as fit stores it) with TRAIN keys changed."""
    cfg = get_config()
    cfg.TRAIN.update(train)
    return json.loads(json.dumps(cfg))


def test_resume_takes_the_snapshots_config():
    cfg, notes = resume_config(_saved(SCALES=[160], BASE_LR=0.01))
    assert cfg.TRAIN.SCALES == [160] and cfg.TRAIN.BASE_LR == 0.01 and notes == []
    # the same values given again are no change
    cfg, notes = resume_config(_saved(SCALES=[160]), set_pairs=[("TRAIN.SCALES", "[160]")])
    assert cfg.TRAIN.SCALES == [160] and notes == []


def test_resume_keys_missing_from_an_older_snapshot_take_the_defaults():
    saved = _saved(SCALES=[160])
    del saved["TRAIN"]["DISPLAY"]
    cfg, _ = resume_config(saved)
    assert cfg.TRAIN.DISPLAY == 20 and cfg.TRAIN.SCALES == [160]


def test_resume_prints_allowed_overrides(tmp_path):
    f = tmp_path / "test.yml"
    f.write_text("TEST:\n  SCALES: [500, 800]\n")
    cfg, notes = resume_config(_saved(SCALES=[160]), [f], [("TRAIN.DISPLAY", "1"), ("EXP_DIR", "x")])
    assert cfg.TRAIN.SCALES == [160] and cfg.TRAIN.DISPLAY == 1 and cfg.TEST.SCALES == [500, 800]
    assert notes == ['TRAIN.DISPLAY: 20 -> 1 (log cadence only)',
                     'TEST.SCALES: [1200] -> [500, 800] (test settings, not read by training)',
                     'EXP_DIR: "SSH" -> "x" (output folder name only)']


def test_resume_refuses_changes_of_what_is_trained(tmp_path):
    with pytest.raises(ValueError) as raised:
        resume_config(_saved(SCALES=[160]), set_pairs=[("TRAIN.SCALES", "[1200]")])
    assert str(raised.value) == (
        "--cfg/--set would change TRAIN.SCALES from the snapshot's [160] to [1200]; a resumed run keeps the "
        "settings its snapshot was trained with (drop the override, or start a new run in another --out)")
    f = tmp_path / "lr.yml"
    f.write_text("TRAIN:\n  BASE_LR: 0.01\n  ITER_SIZE: 2\n")
    with pytest.raises(ValueError, match=r"TRAIN.ITER_SIZE from the snapshot's 8 to 2 and TRAIN.BASE_LR from the "
                                         r"snapshot's 0.004 to 0.01"):
        resume_config(_saved(), [f])
    for key, text in [("RNG_SEED", "4"), ("PIXEL_MEANS", "[[[1, 2, 3]]]"), ("TRAIN.USE_FLIPPED", "False"),
                      ("TRAIN.BATCH_SIZE", "64")]:
        with pytest.raises(ValueError, match=key):
            resume_config(_saved(), set_pairs=[(key, text)])


def test_resume_rejects_a_config_of_another_version():
    saved = _saved()
    saved["TRAIN"]["NEW_KEY"] = 1
    with pytest.raises(ValueError, match="the snapshot's config does not fit this version: unknown config key "
                                         "TRAIN.NEW_KEY"):
        resume_config(saved)


def test_resume_overridable_keys_exist():
    flat = flat_config(get_config())
    assert all(any(k == key or k.startswith(key + ".") for k in flat) for key in RESUME_OVERRIDABLE)


def test_unparsable_set_value_is_a_value_error():
    with pytest.raises(ValueError, match=r"config key TRAIN.SCALES: cannot parse the value '\[1'"):
        set_key(get_config(), "TRAIN.SCALES", "[1")
