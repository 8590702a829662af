"""Config defaults equal the official default_config.yml; YAML merging and --set overrides."""
import argparse
from pathlib import Path

import pytest

from lib.config import add_config_args, config_from_args, get_config, merge_yaml, set_key

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


def test_set_overrides():
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--set", "TEST.SCALES", "[800]", "--set", "TEST.NMS_THRESH", "0.4",
                              "--set", "EXP_DIR", "mine"])
    cfg = config_from_args(args)
    assert cfg.TEST.SCALES == [800] and cfg.TEST.NMS_THRESH == 0.4 and cfg.EXP_DIR == "mine"
    with pytest.raises(KeyError):
        set_key(cfg, "TEST.NOPE", "1")
