"""SSH configuration: the official defaults (SSH/configs/default_config.yml), YAML merging and overrides.

`get_config()` returns a fresh EasyDict; nothing is read or mutated at import time. Library
functions receive plain values taken from it by the scripts. Key names are the official ones,
so the official YAML files (including their `!!python/tuple` tags) merge unchanged. Official keys
this port accepts but never reads are listed, with the reason, in UNUSED_KEYS; setting one to another
value than its default gives a ConfigWarning. `resume_config` rebuilds the config of a resumed run
from the one its snapshot recorded; `data_layout` gives the default paths under DATA_DIR.
The environment variable SSH_DATA_DIR, when set, replaces DATA_DIR's default "data" (read when a
config is made, by `default_data_dir`), so one variable moves the datasets and weight cache of
test.py, eval.py, train.py and `python3 -m model.weights`; --cfg / --set still override it.
`merge_overrides` merges a mapping of values (the torch.hub entry point's `cfg=`).
"""
import ast
import copy
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import yaml
from easydict import EasyDict

_DEFAULTS = {
    "TRAIN": {
        # Train at the original image size instead of SCALES / MAX_SIZE.
        "ORIG_SIZE": False,
        # Shorter side of the training blob in pixels (one scale is supported, as officially).
        "SCALES": [1200],
        # Longer side of the training blob is kept at most this many pixels.
        "MAX_SIZE": 1600,
        # Double the roidb with horizontally flipped copies.
        "USE_FLIPPED": True,
        # Images per forward pass (unused, UNUSED_KEYS: always 1, as officially).
        "IMS_PER_BATCH": 1,
        # Fast R-CNN RoI batch size and background thresholds (unused, UNUSED_KEYS).
        "BATCH_SIZE": 128,
        "BG_THRESH_HI": 0.5,
        "BG_THRESH_LOW": 0.0,
        # Snapshot every SNAPSHOT iterations (wider.yml: 1000); infix for snapshot names.
        "SNAPSHOT": 10000,
        "SNAPSHOT_INFIX": "",
        # Pair landscape with landscape images (unused, UNUSED_KEYS: moot at one image per forward).
        "ASPECT_GROUPING": True,
        # Anchor labelling: IoU >= POSITIVE -> face, IoU < NEGATIVE -> background.
        "ANCHOR_POSITIVE_OVERLAP": 0.5,
        "ANCHOR_NEGATIVE_OVERLAP": 0.3,
        # At most this fraction of ANCHORS_PER_BATCH is positive.
        "ANCHOR_FG_FRACTION": 0.25,
        # Labelled anchors per module and image.
        "ANCHORS_PER_BATCH": 256,
        # Training-time proposal settings (unused, UNUSED_KEYS: no proposal layer runs in training).
        "NMS_THRESH": 0.3,
        "ANCHOR_N_PRE_NMS": 1000,
        "ANCHOR_N_POST_NMS": 300,
        "ANCHOR_MIN_SIZE": 4,
        # Keep the positives with the lowest face probability (OHEM) instead of random ones.
        "HARD_POSITIVE_MINING": True,
        # Regression inside weights, example weighting, forced best anchors (unused, UNUSED_KEYS:
        # the official layer's [1, 1, 1, 1], uniform weights and no forcing are built in).
        "BBOX_INSIDE_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
        "POSITIVE_WEIGHT": -1.0,
        "FORCE_FG_FOR_EACH_GT": False,
        # --- solver (SSH/models/solver_ssh.prototxt, main_train.py); not in default_config.yml ---
        # Forward/backward passes accumulated per SGD step in one process. The official run
        # saw 8 images per step (4 GPUs x iter_size 2); 8 reproduces that on one device.
        "ITER_SIZE": 8,
        "BASE_LR": 0.004,
        "MOMENTUM": 0.9,
        "WEIGHT_DECAY": 0.0005,
        # Step policy: lr = BASE_LR * GAMMA ** floor(iter / STEPSIZE).
        "GAMMA": 0.1,
        "STEPSIZE": 18000,
        # Number of SGD steps of the official run (main_train.py --iters).
        "MAX_ITERS": 21000,
        # Print a log line every DISPLAY iterations (solver `display`).
        "DISPLAY": 20,
    },
    "TEST": {
        # Test at the original image size.
        "ORIG_SIZE": False,
        # Shorter side(s) of the test blob; several values = pyramid test.
        "SCALES": [1200],
        # Longer side of the single-scale test blob kept at most this many pixels.
        "MAX_SIZE": 1600,
        # Pyramid test: the image is first bounded to [min side, max side] = this, then scaled
        # by SCALES[k] / PYRAMID_BASE_SIZE[0].
        "PYRAMID_BASE_SIZE": [800, 1200],
        # NMS threshold on the merged detections (suppress IoU > thresh, +1 areas).
        "NMS_THRESH": 0.3,
        # Top detections kept per module before NMS.
        "N_DETS_PER_MODULE": 1000,
        # Minimum box side (in original-image pixels, times im_scale on the blob); 0 disables.
        "ANCHOR_MIN_SIZE": 0,
    },
    # Caffe debug output switch (unused, UNUSED_KEYS).
    "DEBUG": False,
    # BGR means subtracted from each pixel.
    "PIXEL_MEANS": [[[102.9801, 115.9465, 122.7717]]],
    # Seed of numpy / torch random generators.
    "RNG_SEED": 3,
    # Small constant guarding divisions (unused, UNUSED_KEYS).
    "EPS": 1e-14,
    # Root of datasets and weight files: the scripts' default paths follow it (data_layout).
    # The environment variable SSH_DATA_DIR replaces this default (default_data_dir).
    "DATA_DIR": "data",
    # Command that runs the official MATLAB evaluation tool.
    "MATLAB": "matlab",
    # Experiment folder under output/.
    "EXP_DIR": "SSH",
    # GPU NMS switch and CUDA device index (unused, UNUSED_KEYS: NMS runs where the tensors are,
    # the device comes from --device / --gpu).
    "USE_GPU_NMS": True,
    "GPU_ID": 0,
}


# Keys a resumed run may change, with the reason: none of them alters what an SGD step computes.
# Every other key (legacy ones too, in case one is read one day) must keep the snapshot's value.
RESUME_OVERRIDABLE = {
    "TRAIN.DISPLAY": "log cadence only",
    "TRAIN.SNAPSHOT": "snapshot cadence only; resuming from any snapshot is exact",
    "TRAIN.SNAPSHOT_INFIX": "snapshot file names only",
    "TRAIN.MAX_ITERS": "where training stops, like --iters; the lr schedule does not depend on it",
    "TEST": "test settings, not read by training",
    "EXP_DIR": "output folder name only",
    "DATA_DIR": "where data and weights are found",
    "MATLAB": "evaluation command only",
    "GPU_ID": "device choice only",
    "DEBUG": "legacy, read by nothing",
    "USE_GPU_NMS": "legacy, read by nothing",
}


# Official keys this port accepts (so official YAML files merge) but does not read, with the reason.
UNUSED_KEYS = {
    "TRAIN.IMS_PER_BATCH": "one image per forward pass is built in, as officially (TRAIN.ITER_SIZE sets images per step)",
    "TRAIN.BATCH_SIZE": "Fast R-CNN RoI batch size; SSH has no RoI stage",
    "TRAIN.BG_THRESH_HI": "Fast R-CNN background threshold; SSH has no RoI stage",
    "TRAIN.BG_THRESH_LOW": "Fast R-CNN background threshold; SSH has no RoI stage",
    "TRAIN.ASPECT_GROUPING": "pairs images of one orientation, which is moot at one image per forward pass",
    "TRAIN.NMS_THRESH": "training-time proposal setting; no proposal layer runs during SSH training",
    "TRAIN.ANCHOR_N_PRE_NMS": "training-time proposal setting; no proposal layer runs during SSH training",
    "TRAIN.ANCHOR_N_POST_NMS": "training-time proposal setting; no proposal layer runs during SSH training",
    "TRAIN.ANCHOR_MIN_SIZE": "training-time proposal setting; no proposal layer runs during SSH training",
    "TRAIN.BBOX_INSIDE_WEIGHTS": "the official target layer uses [1, 1, 1, 1] whatever it says; built in",
    "TRAIN.POSITIVE_WEIGHT": "the official target layer weights examples uniformly (-1); built in",
    "TRAIN.FORCE_FG_FOR_EACH_GT": "the official target layer never forces a best anchor per face; built in",
    "DEBUG": "Caffe's debug output switch",
    "EPS": "read by no official SSH layer",
    "USE_GPU_NMS": "NMS runs where the tensors are: the Cython kernel on the CPU, torchvision on CUDA",
    "GPU_ID": "the device is chosen with --device / --gpu",
}


class ConfigWarning(UserWarning):
    """A config key was set to a value this port does not use (see UNUSED_KEYS)."""


def warn_unused(cfg):
    """ConfigWarning for each key of UNUSED_KEYS whose value in `cfg` differs from the default."""
    defaults, values = flat_config(_DEFAULTS), flat_config(cfg)
    for key, reason in UNUSED_KEYS.items():
        if values[key] != defaults[key]:
            warnings.warn(f"config key {key} = {values[key]!r} has no effect in this port: {reason}",
                          ConfigWarning, stacklevel=3)


def data_layout(data_dir):
    """Default paths of the official data layout under DATA_DIR (data/README.md): the trained
    `ssh_model` and its int8 quantization `ssh_int8_model`, the ImageNet `imagenet_model` and the
    `wider` dataset root."""
    root = Path(data_dir)
    return SimpleNamespace(ssh_model=root / "SSH_models" / "SSH.caffemodel",
                           ssh_int8_model=root / "SSH_models" / "SSH_int8.onnx",
                           imagenet_model=root / "imagenet_models" / "VGG16.caffemodel",
                           wider=root / "datasets" / "wider")


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML loader that also accepts the `!!python/tuple` tags of the official config files."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: list(loader.construct_sequence(node))
)


def default_data_dir():
    """DATA_DIR's default: the environment variable SSH_DATA_DIR when set, else "data"."""
    return os.environ.get("SSH_DATA_DIR") or _DEFAULTS["DATA_DIR"]


def default_config():
    """A fresh copy of the official defaults (DATA_DIR: `default_data_dir()`)."""
    cfg = EasyDict(copy.deepcopy(_DEFAULTS))
    cfg.DATA_DIR = default_data_dir()
    return cfg


def _coerce(value, old, key):
    """Cast `value` to the type of the default `old`; lists and tuples are interchangeable."""
    if isinstance(old, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key {key}: expected true/false, got {value!r}")
    if isinstance(old, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return type(old)(value) if isinstance(old, float) or float(value).is_integer() else value
    if isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(old, str) and isinstance(value, str):
        return value
    raise ValueError(f"config key {key}: type {type(value).__name__} does not match default {old!r}")


def _merge(src, dst, prefix=""):
    for k, v in src.items():
        key = prefix + k
        if k not in dst:
            raise KeyError(f"unknown config key {key}")
        if isinstance(dst[k], dict):
            if not isinstance(v, dict):
                raise ValueError(f"config key {key} must be a mapping")
            _merge(v, dst[k], key + ".")
        else:
            dst[k] = _coerce(v, dst[k], key)


def merge_yaml(cfg, path):
    """Merge the YAML file at `path` into `cfg` in place; a missing or unreadable file, YAML
    syntax errors (with their line), unknown keys and wrong types raise ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_ConfigLoader) or {}
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the config file ({getattr(e, 'strerror', None) or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: not a valid YAML config ({problem}{where})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys")
    try:
        _merge(EasyDict(data), cfg)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e.args[0]}") from e


def set_key(cfg, key, text):
    """Override dotted `key` (e.g. 'TEST.SCALES') with `text` parsed as a Python/YAML literal."""
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        if p not in node or not isinstance(node[p], dict):
            raise KeyError(f"unknown config key {key}")
        node = node[p]
    if parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise KeyError(f"unknown config key {key}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"config key {key}: cannot parse the value {text!r}") from None
    node[parts[-1]] = _coerce(value, node[parts[-1]], key)


def merge_overrides(cfg, overrides):
    """Merge the mapping `overrides` into `cfg` in place: nested ({"TEST": {"SCALES": [800]}}) and/or
    dotted ({"TEST.SCALES": [800]}) keys with plain values; a whole config merges to itself.
    Unknown keys raise KeyError, wrong types ValueError."""
    for key, value in overrides.items():
        nested = copy.deepcopy(value)
        for part in reversed(str(key).split(".")):
            nested = {part: nested}
        _merge(EasyDict(nested), cfg)


def get_config(cfg_files=(), set_pairs=()):
    """Defaults, then each YAML file in order, then (key, value-text) overrides."""
    cfg = default_config()
    for path in cfg_files:
        merge_yaml(cfg, path)
    for key, text in set_pairs:
        set_key(cfg, key, text)
    warn_unused(cfg)
    return cfg


def flat_config(cfg, prefix=""):
    """{dotted key: value} of every leaf of a (nested) config mapping."""
    flat = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            flat.update(flat_config(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def _overridable(key):
    """The reason `key` may differ from a resumed snapshot's value (RESUME_OVERRIDABLE), or None."""
    for name, reason in RESUME_OVERRIDABLE.items():
        if key == name or key.startswith(name + "."):
            return reason
    return None


def _show(value):
    """A config value as written in YAML / --set (JSON spelling)."""
    return json.dumps(value)


def resume_config(saved, cfg_files=(), set_pairs=()):
    """The config of a resumed run: the snapshot's `saved` config, then YAML files, then overrides.

    saved: the plain nested dict a snapshot recorded (keys this version lacks raise; keys it lacks
    take the defaults). Returns (cfg, notes): one note "KEY: old -> new (reason)" per changed key of
    RESUME_OVERRIDABLE. Changing any other key raises ValueError naming the keys and both values,
    since the run would no longer continue the training the snapshot belongs to.
    """
    cfg = default_config()
    try:
        _merge(EasyDict(copy.deepcopy(saved)), cfg)
    except (KeyError, ValueError) as e:
        raise ValueError(f"the snapshot's config does not fit this version: {e.args[0]}") from None
    before = copy.deepcopy(flat_config(cfg))
    for path in cfg_files:
        merge_yaml(cfg, path)
    for key, text in set_pairs:
        set_key(cfg, key, text)
    changed = [(key, before[key], new) for key, new in flat_config(cfg).items() if new != before[key]]
    refused = [f"{key} from the snapshot's {_show(old)} to {_show(new)}" for key, old, new in changed
               if _overridable(key) is None]
    if refused:
        raise ValueError(f"--cfg/--set would change {' and '.join(refused)}; a resumed run keeps the settings "
                         f"its snapshot was trained with (drop the override, or start a new run in another --out)")
    return cfg, [f"{key}: {_show(old)} -> {_show(new)} ({_overridable(key)})" for key, old, new in changed]


def add_config_args(parser):
    """Add the shared `--cfg FILE` and `--set KEY VALUE` options to an argparse parser."""
    parser.add_argument("--cfg", action="append", default=[], metavar="FILE",
                        help="YAML config merged over the defaults (repeatable)")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override one config key, e.g. --set TEST.SCALES [800]")


def config_from_args(args):
    """The config described by the options of `add_config_args`."""
    return get_config(args.cfg, [tuple(p) for p in args.set])
