"""ONNX export of the whole single-scale detector: image blob -> detections in one graph.

`DetectionGraph` computes `Detector.postprocess(net(images), scale, (height, width))` in its forward
with the same code, lib/postprocess.PostProcess: per module, anchors for the runtime feature-map
size, decoding, clipping, the minimum-size filter and the top N_DETS_PER_MODULE by score
(lib/proposals); then the merge, division by the scale, score > 0.05 and one NMS with the official
+1 areas (lib/nms, which shifts x2, y2 by +1 and, while exporting, calls torchvision.ops.nms).

Uses torch.onnx.export's dynamo exporter at ONNX opset 18; torchvision::nms becomes ONNX
NonMaxSuppression (suppresses IoU > threshold, float32 threshold). Graph contract: inputs "images"
(1 x 3 x height x width float32, BGR minus the pixel means, already resized; height and width dynamic)
and "scale" (float32 scalar, blob size / original size); output "detections" (N x 5 float32 rows x1,
y1, x2, y2, score in original-image pixels, score-descending). Single-scale test only: the pyramid
test pools several blobs and is left to `Detector`.
"""
import warnings
from pathlib import Path

import torch
from torch import nn

from lib.postprocess import SCORE_THRESH, PostProcess
from lib.utils.atomic import atomic_path

from .onnx_export import OPSET, contiguous_copy

INPUT_NAMES = ("images", "scale")
OUTPUT_NAME = "detections"
# Blob size traced at export; any other size runs the same graph.
EXPORT_HW = (96, 128)


class DetectionGraph(nn.Module):
    """`net` (an `SSH`) plus the single-scale post-processing of `Detector`, for one image.

    forward(images 1 x 3 x H x W, scale 0-d) -> (N, 5) detections. nms_thresh, top_n (<= 0 keeps all),
    min_size (ANCHOR_MIN_SIZE in original pixels, 0 disables) and score_thresh as in `PostProcess`.
    """

    def __init__(self, net, nms_thresh, top_n, min_size=0, score_thresh=SCORE_THRESH):
        super().__init__()
        self.net = net
        self.post = PostProcess(nms_thresh, top_n, min_size, score_thresh)

    def forward(self, images, scale):
        return self.post([(self.net(images), scale, images.shape[-2:])])


def export_onnx_detector(net, path, test_cfg, example_hw=EXPORT_HW):
    """Write `net` (an `SSH`) with the TEST settings of `test_cfg` as one detection graph at `path`,
    atomically, and check it with onnx's full checker; returns `path`.

    Traced on a 1 x 3 x example_hw zero blob on the network's device. Raises OSError when `path`
    cannot be written and ValueError when the graph fails the checker (nothing is left behind).
    """
    import onnx

    path = Path(path)
    device = next(net.parameters()).device
    net = contiguous_copy(net)
    graph = DetectionGraph(net, test_cfg.NMS_THRESH, test_cfg.N_DETS_PER_MODULE, test_cfg.ANCHOR_MIN_SIZE).eval()
    example = (torch.zeros(1, 3, *example_hw, device=device), torch.tensor(1.0, device=device))
    height, width = torch.export.Dim("height"), torch.export.Dim("width")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # torch's own exporter calls a deprecated function of torch (the data-dependent NMS size).
        warnings.filterwarnings("ignore", message="`create_unbacked_symint` is deprecated")
        torch.onnx.export(graph, example, str(tmp), dynamo=True, opset_version=OPSET,
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_shapes={"images": {2: height, 3: width}, "scale": None},
                          external_data=False, verbose=False)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise ValueError(f"{path}: exported graph is not valid ONNX ({str(e).splitlines()[0]})") from None
    return path
