"""Face detection with SSH: preprocessing, network, per-module decoding, merge and NMS.

Mirrors SSH/test.py of the official code (im_detect / test_net): single-scale test with
TEST.SCALES[0] / TEST.MAX_SIZE, or the pyramid test when TEST.SCALES holds several sizes
(docs/inference.md §5.2, §5.3). Detections are (N, 5) rows x1, y1, x2, y2, score in the
original image's pixels (inclusive corners), score-descending.
"""
from os import PathLike

import cv2
import numpy as np
import torch

from lib.anchors import MODULE_NAMES
from lib.blob import compute_scale, prep_image
from lib.postprocess import SCORE_THRESH, PostProcess
from lib.utils.device import default_device
from lib.utils.iteration import batched

from .precision import autocast, check_precision
from .weights.loading import load_network


def check_image(image):
    """ValueError, naming what was given, unless `image` is a non-empty uint8 numpy image: H x W grey,
    or H x W x 1, 3 (BGR) or 4 (BGRA) channels."""
    if isinstance(image, (str, bytes, PathLike)):
        raise ValueError(f"expected a decoded uint8 numpy image, got the path {image!r}: "
                         "read it first (lib.image_io.read_image or cv2.imread)")
    if not isinstance(image, np.ndarray):
        kind = type(image)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        raise ValueError(f"expected a uint8 numpy image, got {name}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image (0..255, as cv2.imread gives), got {image.dtype} "
                         f"of shape {image.shape}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        batch = " (a batch goes in as a list of images)" if image.ndim == 4 else ""
        raise ValueError(f"expected an H x W grey, BGR or BGRA image, got shape {image.shape}{batch}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an image with pixels, got an empty one of shape {image.shape}")


def as_bgr(image):
    """BGR uint8 (H, W, 3) view of a grey, BGR or BGRA uint8 image; other inputs raise ValueError
    (`check_image`). Grey and BGRA are converted into a new array, BGR is returned as it is."""
    check_image(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # H x W or H x W x 1


def level_modules(scales, orig_size):
    """The modules used on each test level: all of them on the single level of the single-scale test
    (one target size in `scales`, or `orig_size`); in the pyramid test, all but M3 on the level of
    the largest target size, as officially (docs/inference.md §5.3)."""
    if orig_size or len(scales) == 1:
        return (MODULE_NAMES,)
    largest = max(scales)
    return tuple(MODULE_NAMES[:2] if t == largest else MODULE_NAMES for t in scales)


class Detector:
    """SSH network plus the official test-time pipeline (docs/inference.md §5.2, §5.3).

    net: an `SSH` or a module with its forward contract; pixel_means: BGR means (PIXEL_MEANS).
    Test levels: scales (TEST.SCALES, target shorter sides; several make the pyramid test),
    max_size (TEST.MAX_SIZE), pyramid_base_size (TEST.PYRAMID_BASE_SIZE), orig_size (TEST.ORIG_SIZE:
    one level at scale 1). Post-processing, `post` (lib/postprocess.PostProcess): nms_thresh
    (TEST.NMS_THRESH), top_n (TEST.N_DETS_PER_MODULE), min_size (TEST.ANCHOR_MIN_SIZE) and
    score_thresh (kept when score > it; the official test_net's SCORE_THRESH = 0.05). `from_config`
    reads them all from a config. The network runs in channels_last memory format (same values to
    float rounding, 1.2-1.6x faster on CPU). precision (model/precision.py): "fp32", "bf16" or "fp16"
    runs a PyTorch network under that autocast; an ONNX network (model.deploy.onnx_runtime) runs in
    its own format, "fp32" or "int8", which `precision` must name. Decoding and NMS run in float32.
    """

    def __init__(self, net, pixel_means, *, scales, max_size, pyramid_base_size, orig_size,
                 nms_thresh, top_n, min_size, score_thresh, device="cpu", precision="fp32"):
        self.device = torch.device(device)
        check_precision(precision, net, self.device)
        self.precision = precision
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()
        self.pixel_means = np.asarray(pixel_means, dtype=np.float32).reshape(3)
        self.test_scales = tuple(scales)
        self.max_size = max_size
        self.pyramid_base_size = tuple(pyramid_base_size)
        self.orig_size = orig_size
        self.post = PostProcess(nms_thresh, top_n, min_size, score_thresh,
                                level_modules(self.test_scales, orig_size)).to(self.device)

    @classmethod
    def from_config(cls, net, cfg, device="cpu", precision="fp32", score_thresh=SCORE_THRESH):
        """Detector with the TEST settings and PIXEL_MEANS of `cfg` (lib/config.py)."""
        test = cfg.TEST
        return cls(net, cfg.PIXEL_MEANS, scales=test.SCALES, max_size=test.MAX_SIZE,
                   pyramid_base_size=test.PYRAMID_BASE_SIZE, orig_size=test.ORIG_SIZE,
                   nms_thresh=test.NMS_THRESH, top_n=test.N_DETS_PER_MODULE, min_size=test.ANCHOR_MIN_SIZE,
                   score_thresh=score_thresh, device=device, precision=precision)

    def scales(self, height, width):
        """[(scale, modules)] of the test levels for an image of height x width.

        One level in the single-scale test; in the pyramid test, the base scale bounds the image to
        pyramid_base_size and level k is scaled by scales[k] / base (modules: `level_modules`).
        """
        if self.orig_size:
            values = [1.0]
        elif len(self.test_scales) == 1:
            values = [compute_scale(height, width, self.test_scales[0], self.max_size)]
        else:
            base_min, base_max = self.pyramid_base_size
            base = compute_scale(height, width, base_min, base_max)
            values = [base * t / base_min for t in self.test_scales]
        return list(zip(values, self.post.level_modules))

    @torch.inference_mode()
    def forward(self, blob):
        """Raw heads {module: (cls_score, bbox_pred)} in float32 for an N x 3 x H x W blob."""
        blob = blob.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, self.device):
            heads = self.net(blob)
        return {m: (c.float(), b.float()) for m, (c, b) in heads.items()}

    def postprocess(self, heads, scale, image_hw):
        """(N, 5) detections in original pixels from one image's `SSH.forward` output.

        scale: blob size / original size; image_hw: (H, W) of the network input blob (im_info[:2]),
        to which boxes are clipped before dividing by the scale. Every module is used, whatever
        the test levels.
        """
        return self.post.select(*self.post.candidates(heads, scale, image_hw))

    def detect(self, images):
        """Detections for a uint8 grey/BGR/BGRA image, or a list of detections for a list of images.

        One image gives (N, 5) float32 numpy rows x1, y1, x2, y2, score. A list is batched: the blobs
        of all its images (and pyramid levels) are grouped by blob size and each group runs through
        the network as one batch. Blobs of different sizes are never padded together, since zero
        padding would change the features at the borders; each image's result is therefore that of
        one-at-a-time detection, up to the float rounding of batched convolution kernels.
        Every image is checked before any work (`check_image`: ValueError naming the image of a list
        and its shape or type, e.g. for an empty image); a grey or BGRA image's BGR copy lives only
        while its blobs are made.
        """
        if isinstance(images, np.ndarray):
            return self.detect([images])[0]
        if isinstance(images, (str, bytes, PathLike, torch.Tensor)):
            check_image(images)  # one thing, not a list: say what it is
        images = list(images)
        for i, image in enumerate(images):
            try:
                check_image(image)
            except ValueError as e:
                raise ValueError(f"image {i} of the list: {e}" if len(images) > 1 else str(e)) from None
        return self.detect_prepared([self.prepare(image) for image in images])

    def prepare(self, image):
        """[(scale, H x W x 3 float32 blob)] of one uint8 grey/BGR/BGRA image, one per test level:
        the CPU half of `detect`, without the network, so worker threads can prepare the next images
        while the network runs (lib.utils.prefetch). Blobs are numpy arrays, on CUDA torch tensors in
        page-locked memory (their copy to the GPU then overlaps the host's work). A grey or BGRA
        image's BGR copy lives only while its blobs are made."""
        image = as_bgr(image)
        blobs = [(scale, prep_image(image, self.pixel_means, scale)) for scale, _ in self.scales(*image.shape[:2])]
        if self.device.type == "cuda":  # page-locked here, on the worker, so the copy to the GPU is asynchronous
            blobs = [(scale, torch.from_numpy(blob).pin_memory()) for scale, blob in blobs]
        return blobs

    def detect_prepared(self, prepared):
        """Detections (a list of (N, 5) float32 arrays) of a list of `prepare` results: the blobs of
        all images and levels grouped by size, each group run through the network as one batch. The
        lists of `prepared` are emptied, so each group's blobs are freed once stacked."""
        groups = {}
        for i, levels in enumerate(prepared):
            for level, (_, blob) in enumerate(levels):
                groups.setdefault(blob.shape[:2], []).append((i, level, blob))
        scales = [[scale for scale, _ in levels] for levels in prepared]
        for levels in prepared:
            levels.clear()
        inputs = [[None] * len(image_scales) for image_scales in scales]
        for blob_hw in list(groups):  # in order of first appearance
            group = groups.pop(blob_hw)
            nhwc = self._stacked([blob for *_, blob in group])
            group = [(i, level) for i, level, _ in group]
            heads = self.forward(nhwc.permute(0, 3, 1, 2))
            del nhwc
            for k, (i, level) in enumerate(group):
                one = {m: (cls[k:k + 1], reg[k:k + 1]) for m, (cls, reg) in heads.items()}
                inputs[i][level] = (one, scales[i][level], blob_hw)
        return [self.post(image_inputs).cpu().numpy() for image_inputs in inputs]

    def _stacked(self, blobs):
        """N x H x W x 3 float32 tensor of `prepare`'s H x W x 3 blobs; seen as N x 3 x H x W it is the
        channels_last layout forward() wants. No copy for one blob; one (the batch) for several, into
        page-locked memory on CUDA."""
        tensors = [torch.as_tensor(blob) for blob in blobs]
        if len(tensors) == 1:
            return tensors[0][None]
        batch = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype,
                            pin_memory=self.device.type == "cuda")
        return torch.stack(tensors, out=batch)

    __call__ = detect

    def detect_stream(self, images, batch_size=1):
        """Yield (image, detections) for each image of the iterable `images`, in order, taking
        `batch_size` images at a time from it into one `detect` call."""
        for batch in batched(images, batch_size):
            yield from zip(batch, self.detect(batch))


def build_detector(model_path, cfg, device=None, precision="fp32", score_thresh=SCORE_THRESH, backend=None):
    """Detector for the weights at `model_path` with the TEST settings and PIXEL_MEANS of `cfg`, in
    `precision` (an int8 model runs on the CPU whatever the default device)."""
    device = device or ("cpu" if precision == "int8" else default_device())
    net = load_network(model_path, backend, device)
    return Detector.from_config(net, cfg, device, precision, score_thresh)
