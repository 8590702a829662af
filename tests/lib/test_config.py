"""Config defaults equal the official default_config.yml; YAML merging, --set overrides, resume rules."""
import argparse
import json
import re
import warnings

import pytest
from caffe_fixtures import parse_prototxt

from lib.config import (RESUME_OVERRIDABLE, add_config_args, config_from_args, default_config, flat_config, get_config,
                        merge_yaml, resume_config, set_key)
from lib.training import snapshot_prefix
from shared import REFERENCE, ROOT, needs_shared

SOLVER = REFERENCE / "solver_ssh.prototxt"

# Every key of the official SSH/configs/default_config.yml (mahyarnajibi/SSH) with its value there.
# docs/ states most of them; the file and section are named on each line. Keys docs/ does not state
# carry "(yml)": their value is the file's as read in mahyarnajibi/SSH at commit a0d10a85.
DEFAULT_CONFIG_YML = {
    "TRAIN.ORIG_SIZE": False,  # training.md §4.3
    "TRAIN.SCALES": [1200],  # training.md §4.3
    "TRAIN.MAX_SIZE": 1600,  # training.md §4.3
    "TRAIN.USE_FLIPPED": True,  # training.md §4.3
    "TRAIN.IMS_PER_BATCH": 1,  # training.md §4.1
    "TRAIN.BATCH_SIZE": 128,  # training.md §3.1 (legacy, unused)
    "TRAIN.BG_THRESH_HI": 0.5,  # (yml), legacy Fast R-CNN key
    "TRAIN.BG_THRESH_LOW": 0.0,  # (yml), legacy Fast R-CNN key
    "TRAIN.SNAPSHOT": 10000,  # (yml); wider.yml sets 1000 (training.md §4.1), see test_shipped_configs
    "TRAIN.SNAPSHOT_INFIX": "",  # (yml)
    "TRAIN.ASPECT_GROUPING": True,  # training.md §4.3
    "TRAIN.ANCHOR_POSITIVE_OVERLAP": 0.5,  # training.md §3
    "TRAIN.ANCHOR_NEGATIVE_OVERLAP": 0.3,  # training.md §3
    "TRAIN.ANCHOR_FG_FRACTION": 0.25,  # training.md §3
    "TRAIN.ANCHORS_PER_BATCH": 256,  # training.md §3
    "TRAIN.NMS_THRESH": 0.3,  # inference.md §5.1 (TRAIN-phase proposal settings, unused)
    "TRAIN.ANCHOR_N_PRE_NMS": 1000,  # inference.md §5.1
    "TRAIN.ANCHOR_N_POST_NMS": 300,  # inference.md §5.1
    "TRAIN.ANCHOR_MIN_SIZE": 4,  # inference.md §5.1
    "TRAIN.HARD_POSITIVE_MINING": True,  # training.md §3
    "TRAIN.BBOX_INSIDE_WEIGHTS": [1.0, 1.0, 1.0, 1.0],  # training.md §3
    "TRAIN.POSITIVE_WEIGHT": -1.0,  # training.md §3
    "TRAIN.FORCE_FG_FOR_EACH_GT": False,  # training.md §3
    "TEST.ORIG_SIZE": False,  # (yml)
    "TEST.SCALES": [1200],  # inference.md §5.2
    "TEST.MAX_SIZE": 1600,  # inference.md §5.2
    "TEST.PYRAMID_BASE_SIZE": [800, 1200],  # inference.md §5.3 (target 800, max 1200)
    "TEST.NMS_THRESH": 0.3,  # inference.md §5.2
    "TEST.N_DETS_PER_MODULE": 1000,  # inference.md §5.1
    "TEST.ANCHOR_MIN_SIZE": 0,  # inference.md §5.1
    "DEBUG": False,  # (yml)
    "PIXEL_MEANS": [[[102.9801, 115.9465, 122.7717]]],  # training.md §4.3 (B, G, R), nested as in the yml
    "RNG_SEED": 3,  # training.md §4.1
    "EPS": 1e-14,  # (yml)
    "DATA_DIR": "data",  # (yml)
    "MATLAB": "matlab",  # (yml)
    "EXP_DIR": "SSH",  # (yml)
    "USE_GPU_NMS": True,  # (yml)
    "GPU_ID": 0,  # (yml)
}
# Config keys whose official value is a field of solver_ssh.prototxt (read from the file by the tests).
SOLVER_KEYS = {
    "base_lr": "TRAIN.BASE_LR",
    "gamma": "TRAIN.GAMMA",
    "stepsize": "TRAIN.STEPSIZE",
    "momentum": "TRAIN.MOMENTUM",
    "weight_decay": "TRAIN.WEIGHT_DECAY",
    "display": "TRAIN.DISPLAY",
}
# Official GPUs per SGD step (main_train.py --gpus 0,1,2,3; training.md §4.1): TRAIN.ITER_SIZE is the images of
# one official step, 4 GPUs x the solver's iter_size, accumulated in one process.
OFFICIAL_GPUS = 4
# Solver fields that are no config key, each with where its behaviour is checked or why it has none.
SOLVER_ELSEWHERE = {
    "train_net": "the network file: model/ssh.py mirrors it (tests/model/test_ssh_exact.py)",
    "lr_policy": "only 'step' exists in the port (lib.solver.StepLR, tests/lib/test_solver.py)",
    "iter_size": "TRAIN.ITER_SIZE = OFFICIAL_GPUS x iter_size",
    "snapshot": "0: Caffe's own snapshots are off; SSH/train.py snapshots every TRAIN.SNAPSHOT iterations",
    "snapshot_prefix": "lib.training.snapshot_prefix",
    "average_loss": "smoothing of the printed loss only",
    "layer_wise_reduce": "multi-GPU all-reduce scheduling only, no effect on the values",
}
# main_train.py --iters default (training.md §4.1): not in the solver file.
MAX_ITERS = 21000


def solver_fields():
    """{field: value} of the official solver_ssh.prototxt (every field occurs once)."""
    fields = parse_prototxt(SOLVER.read_text())
    assert len({k for k, _ in fields}) == len(fields)
    return dict(fields)


def _same(value, expected):
    """Equal and of the same type, recursively (True != 1, 1 != 1.0 here)."""
    if isinstance(expected, list):
        return isinstance(value, list) and len(value) == len(expected) and all(map(_same, value, expected))
    return type(value) is type(expected) and value == expected


def test_defaults_equal_the_official_default_config_yml():
    flat = flat_config(default_config())
    wrong = {key: (flat.get(key, "<missing>"), official) for key, official in DEFAULT_CONFIG_YML.items()
             if not _same(flat.get(key), official)}
    assert wrong == {}, "key: (ours, official)"


@needs_shared(SOLVER)
def test_solver_defaults_equal_the_official_solver_prototxt():
    fields = solver_fields()
    assert set(fields) == set(SOLVER_KEYS) | set(SOLVER_ELSEWHERE), "a solver field without a home"
    train = default_config().TRAIN
    for field, key in SOLVER_KEYS.items():
        ours = train[key.split(".")[1]]
        assert _same(ours, fields[field]), f"{key} = {ours!r}, solver_ssh.prototxt {field}: {fields[field]!r}"
    assert fields["iter_size"] == 2 and train.ITER_SIZE == OFFICIAL_GPUS * fields["iter_size"]
    assert fields["lr_policy"] == "step"
    assert snapshot_prefix(train.SNAPSHOT_INFIX) == fields["snapshot_prefix"]
    assert train.MAX_ITERS == MAX_ITERS


def test_every_default_key_has_an_official_value():
    flat = set(flat_config(default_config()))
    official = set(DEFAULT_CONFIG_YML) | set(SOLVER_KEYS.values()) | {"TRAIN.ITER_SIZE", "TRAIN.MAX_ITERS"}
    assert sorted(flat - official) == [], "config keys without an official value in this test"
    assert sorted(official - flat) == [], "official keys missing from lib/config.py"


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


def test_unused_keys_are_listed_once_and_read_by_no_code():
    """UNUSED_KEYS names official keys that exist in the defaults; no module outside lib/config.py
    reads one (by its TRAIN./TEST. path, also written `train.`/`test.` as in a from_config, or, for a
    leaf name no used key shares, by that name)."""
    from lib.config import _DEFAULTS, UNUSED_KEYS

    flat = flat_config(_DEFAULTS)
    assert set(UNUSED_KEYS) <= set(flat)
    used_leaves = {k.split(".")[-1] for k in flat if k not in UNUSED_KEYS}
    sources = [p for folder in ("lib", "model") for p in (ROOT / folder).rglob("*.py")] + list(ROOT.glob("*.py"))
    code = {p: p.read_text() for p in sources if p.name != "config.py"}
    for key in UNUSED_KEYS:
        leaf = key.split(".")[-1]
        section = key.split(".")[0]
        patterns = [rf"\b{section}\.{leaf}\b", rf"\b{section.lower()}\.{leaf}\b"] if "." in key else []
        if leaf not in used_leaves:
            patterns.append(rf"\.{leaf}\b|\[\s*['\"]{leaf}['\"]\s*\]")
        readers = [str(p.relative_to(ROOT)) for p, text in code.items() if any(re.search(r, text) for r in patterns)]
        assert readers == [], f"{key} is listed as unused but read in {readers}"


def test_setting_an_unused_key_warns_and_the_official_configs_do_not():
    from lib.config import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"TRAIN.FORCE_FG_FOR_EACH_GT = True has no effect in this port"):
        get_config(set_pairs=[("TRAIN.FORCE_FG_FOR_EACH_GT", "True")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_config([ROOT / "configs/wider.yml"])
        get_config([ROOT / "configs/wider_pyramid.yml"])
        get_config(set_pairs=[("TRAIN.FORCE_FG_FOR_EACH_GT", "False")])


def test_data_dir_drives_the_default_paths_of_the_scripts(tmp_path, capsys):
    import eval as eval_script
    import test as test_script
    import train as train_script
    from lib.config import data_layout

    layout = data_layout(tmp_path)
    assert (layout.ssh_model, layout.imagenet_model, layout.wider) == (
        tmp_path / "SSH_models/SSH.caffemodel", tmp_path / "imagenet_models/VGG16.caffemodel", tmp_path / "datasets/wider")
    moved = ["--set", "DATA_DIR", str(tmp_path)]
    assert test_script.main(moved) == 2
    assert f"model file not found: {layout.ssh_model}. Run `make demo`" in capsys.readouterr().err
    assert eval_script.main(moved) == 2
    assert f"no ground truth at {layout.wider / 'eval_tools' / 'ground_truth'} (the default)" in capsys.readouterr().err
    assert train_script.main(moved) == 2
    assert f"ImageNet model {layout.imagenet_model} not found" in capsys.readouterr().err


def test_from_config_maps_each_official_key_to_its_plain_value():
    """TrainSettings / LossSettings.from_config read each key they need, by its official name."""
    from lib.losses import LossSettings
    from lib.training import TrainSettings

    cfg = default_config()
    values = {"SCALES": [640], "MAX_SIZE": 900, "ORIG_SIZE": True, "ITER_SIZE": 3, "BASE_LR": 0.01,
              "MOMENTUM": 0.8, "WEIGHT_DECAY": 0.001, "GAMMA": 0.5, "STEPSIZE": 7, "SNAPSHOT": 11,
              "SNAPSHOT_INFIX": "x", "DISPLAY": 13, "ANCHOR_POSITIVE_OVERLAP": 0.6, "ANCHOR_NEGATIVE_OVERLAP": 0.2,
              "ANCHORS_PER_BATCH": 128, "ANCHOR_FG_FRACTION": 0.5, "HARD_POSITIVE_MINING": False}
    cfg.TRAIN.update(values)
    cfg.PIXEL_MEANS, cfg.RNG_SEED = [[[1.0, 2.0, 3.0]]], 9
    s = TrainSettings.from_config(cfg)
    assert (s.scales, s.max_size, s.orig_size, s.iter_size, s.base_lr, s.momentum, s.weight_decay, s.gamma,
            s.stepsize, s.snapshot, s.snapshot_infix, s.display) == (
        (640,), 900, True, 3, 0.01, 0.8, 0.001, 0.5, 7, 11, "x", 13)
    assert (s.pixel_means, s.rng_seed) == ((1.0, 2.0, 3.0), 9)
    assert s.losses == LossSettings(positive_overlap=0.6, negative_overlap=0.2, batch_size=128, fg_fraction=0.5,
                                    hard_positive_mining=False)
