"""Non-maximum suppression with the official semantics: +1 areas, suppress when IoU > thresh.

Both kernels see boxes with x2, y2 shifted by +1 (turning plain areas into +1 areas) and compare
the float32 IoU with the float32 threshold, as the official GPU kernel does. CUDA tensors go to
torchvision.ops.nms; CPU tensors go to the Cython kernel built by `make -C lib`, about 2x faster
there (python3 -m benchmarks nms). Both return identical keeps (tests/lib/test_nms.py). While
torch.export / torch.onnx trace, torchvision.ops.nms serves every device: it is the one that traces
(to ONNX NonMaxSuppression, which also suppresses IoU > threshold in float32).
"""
import numpy as np
import torch
import torchvision

try:
    from .cpu_nms import nms_sorted as _cpu_nms_sorted
except ImportError:  # not built yet: torchvision serves the CPU too
    _cpu_nms_sorted = None


def _plus_one(boxes):
    """float32 boxes with x2, y2 shifted by +1 (out of place: exports without a ScatterND)."""
    boxes = boxes.float()
    return torch.cat([boxes[:, :2], boxes[:, 2:] + 1], dim=1)


def _float32(x):
    """x rounded to float32: torchvision's CPU kernel compares with a double threshold."""
    return float(np.float32(x))


def nms_torchvision(boxes, scores, thresh):
    """Kept indices (descending score) by torchvision.ops.nms with +1 areas."""
    return torchvision.ops.nms(_plus_one(boxes), scores.float(), _float32(thresh))


def nms_cython(boxes, scores, thresh):
    """Kept indices (descending score) by the Cython kernel; CPU tensors only."""
    if _cpu_nms_sorted is None:
        raise RuntimeError("lib/nms/cpu_nms is not built: run `make -C lib`")
    order = torch.argsort(scores, descending=True, stable=True)
    keep = torch.from_numpy(_cpu_nms_sorted(_plus_one(boxes[order]).numpy(), _float32(thresh)))
    return order[keep]


def nms(boxes, scores, thresh):
    """Indices of `boxes` (N, 4) kept by greedy NMS, by descending `scores` (N,)."""
    if boxes.is_cuda or _cpu_nms_sorted is None or torch.compiler.is_compiling():
        return nms_torchvision(boxes, scores, thresh)
    return nms_cython(boxes, scores, thresh)
