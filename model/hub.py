"""The torch.hub entry point (re-exported by hubconf.py at the repository root): a ready Detector.

    detector = torch.hub.load("path/to/this/repo", "ssh", source="local")
    boxes = detector(cv2.imread("photo.jpg"))  # (N, 5) float32: x1, y1, x2, y2, score

Weights are cached under DATA_DIR, the same place as `python3 -m model.weights` uses when run from
the repository: `data_dir=`, else $SSH_DATA_DIR, else the repository's data/ folder (the hubconf's
folder, also for a repository torch.hub downloaded from GitHub).
"""
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from lib.config import data_layout, get_config, merge_overrides, warn_unused
from lib.postprocess import SCORE_THRESH
from lib.utils.device import parse_device

from .detector import Detector, build_detector
from .precision import resolve_precision, warn_if_emulated
from .ssh import SSH
from .weights.official import ensure_weights

REPO = Path(__file__).resolve().parents[1]


def hub_config(cfg):
    """The config for `cfg`: None (official defaults), a YAML file path, or a mapping merged over the
    defaults (dotted and/or nested keys, or a whole config from lib.config.get_config)."""
    if cfg is None:
        return get_config()
    if isinstance(cfg, (str, os.PathLike)):
        return get_config([cfg])
    if isinstance(cfg, Mapping):
        config = get_config()
        merge_overrides(config, cfg)
        warn_unused(config)
        return config
    raise ValueError(f"cfg must be None, a YAML path or a mapping of config keys, got {type(cfg).__name__}")


def cache_dir(data_dir, cfg):
    """Where weights are cached: `data_dir`, else cfg.DATA_DIR ($SSH_DATA_DIR or a cfg override, as for
    the scripts), except that the default "data" means the repository's data/, not the working folder's."""
    if data_dir is not None:
        return Path(data_dir)
    return REPO / "data" if cfg.DATA_DIR == "data" else Path(cfg.DATA_DIR)


def ssh(pretrained=True, device=None, precision="fp32", cfg=None, data_dir=None, weights=None,
        score_thresh=SCORE_THRESH, backend=None):
    """SSH face detector (Najibi et al., ICCV 2017), ready to run: `detector(image)` takes a uint8 BGR
    (or grey / BGRA) numpy image and returns (N, 5) float32 rows x1, y1, x2, y2, score in its
    pixels; `detector.detect([images])` batches a list. Anything else (an empty image, another
    dtype or shape, a path) raises ValueError naming it; read files with lib.image_io.read_image.

    pretrained: True fetches the official SSH.caffemodel into the cache on first use (about 80 MB,
        resumable; see `python3 -m model.weights ssh`) and checks its integrity record on later
        uses; False gives a freshly initialised random network, for experiments only.
    device: "cpu", "cuda" or "cuda:N" (default: cuda when available; cpu for int8).
    precision: "fp32", "bf16", "fp16" (PyTorch autocast), "int8" (<cache>/SSH_models/SSH_int8.onnx
        run by ONNX Runtime, made by `python3 -m model.deploy quantize`) or "auto": the fastest that
        runs natively here (fp16 on CUDA; on the CPU int8 when the int8 model of these weights is
        beside them, else bf16 where the CPU has bf16 instructions, else fp32), said in one line on
        stderr. bf16 or fp16 on a CPU that only emulates them warns (PrecisionWarning).
    cfg: None (official test settings: one scale 1200, max 1600), a YAML file, or a dict of
        overrides such as {"TEST.SCALES": [800], "TEST.MAX_SIZE": 1200} or {"TEST": {"SCALES": [800]}}.
    data_dir: the cache (default: $SSH_DATA_DIR, else DATA_DIR = data/ in the repository).
    weights: your own .caffemodel, .pth or .onnx file instead of the official weights.
    score_thresh: detections with score > it are returned (official 0.05).
    backend: "pytorch" or "onnxruntime" (default: by the weights' file type).
    """
    config = hub_config(cfg)
    if weights is None and not pretrained:
        if precision == "int8":
            raise ValueError("precision int8 runs a quantised ONNX file: use pretrained=True or weights=")
        choice = resolve_precision(precision, device)
    else:
        if weights is None:
            root = cache_dir(data_dir, config)
            if precision == "int8":
                weights = data_layout(root).ssh_int8_model
                if not weights.is_file():
                    raise FileNotFoundError(f"int8 model {weights} not found: write it with `python3 -m model.deploy "
                                            f"quantize` (DATA_DIR {root}), or use precision='fp32'")
            else:
                weights = ensure_weights("ssh", root)
        choice = resolve_precision(precision, device, weights, backend=backend)
    if choice.message:
        print(choice.message, file=sys.stderr)
    warn_if_emulated(choice.precision, choice.device)
    if choice.model is None:
        return Detector.from_config(SSH(), config, choice.device, choice.precision, score_thresh)
    return build_detector(choice.model, config, choice.device, choice.precision, score_thresh, backend)
