"""Detections of the network being trained on a few fixed photos, drawn for TensorBoard.

The official single-scale test (SSH/test.py; model/detector.py) in its simplest form, to keep it
cheap: one level at TEST.SCALES[0] / TEST.MAX_SIZE (a pyramid config's first size; scale 1 with
TEST.ORIG_SIZE), the TEST post-processing (lib/postprocess.py), boxes of score >= 0.5 drawn as the
official demo does (lib/visualize.py). The training network runs in eval mode under no_grad and goes
back to training mode: no gradient, weight, optimizer or RNG state changes.
"""
import cv2
import numpy as np
import torch

from lib.blob import compute_scale, prep_image
from lib.evaluation.run import val_images
from lib.visualize import draw_detections

# Photos shown, and the longest side (pixels) each is drawn at.
PREVIEW_PHOTOS = 3
PREVIEW_SIDE = 640


def preview_photos(wider_root, count=PREVIEW_PHOTOS):
    """Paths of the first `count` photos of WIDER val under `wider_root` (eval.py's val_images: split-file
    order); [] when the folder holds no val split."""
    try:
        names, root = val_images(wider_root)
    except FileNotFoundError:
        return []
    return [root / name for name in names[:count]]


class DetectionPreview:
    """Callable: `preview(net)` -> one H x W x 3 RGB uint8 picture per photo with the detections of `net`
    (an SSH) drawn on it.

    photos: BGR uint8 images; pixel_means: BGR means (PIXEL_MEANS); target_size, max_size: the blob's
    shorter and longest side (None: scale 1); post: the lib/postprocess.PostProcess of the test.
    """

    def __init__(self, photos, pixel_means, target_size, max_size, post, thresh=0.5, side=PREVIEW_SIDE):
        self.photos = list(photos)
        self.pixel_means = np.asarray(pixel_means, dtype=np.float32).reshape(3)
        self.target_size = target_size
        self.max_size = max_size
        self.post = post
        self.thresh = thresh
        self.side = side

    @classmethod
    def from_config(cls, cfg, photos):
        """The preview of `photos` with the TEST settings and PIXEL_MEANS of `cfg` (lib/config.py)."""
        from lib.postprocess import PostProcess  # imports torchvision (1.5 s): only for runs that draw pictures

        test = cfg.TEST
        post = PostProcess(test.NMS_THRESH, test.N_DETS_PER_MODULE, test.ANCHOR_MIN_SIZE)
        target = None if test.ORIG_SIZE else test.SCALES[0]
        return cls(photos, np.ravel(cfg.PIXEL_MEANS), target, test.MAX_SIZE, post)

    @torch.no_grad()
    def detect(self, net, photo):
        """(N, 5) float32 x1, y1, x2, y2, score of one BGR photo, in its pixels."""
        device = next(net.parameters()).device
        height, width = photo.shape[:2]
        scale = 1.0 if self.target_size is None else compute_scale(height, width, self.target_size, self.max_size)
        blob = torch.from_numpy(prep_image(photo, self.pixel_means, scale)).permute(2, 0, 1)[None].to(device)
        heads = {m: (cls.float(), reg.float()) for m, (cls, reg) in net(blob).items()}
        post = self.post.to(device)
        return post([(heads, scale, tuple(blob.shape[-2:]))]).cpu().numpy()

    def __call__(self, net):
        training = net.training
        net.eval()
        try:
            return [self.draw(photo, self.detect(net, photo)) for photo in self.photos]
        finally:
            net.train(training)

    def draw(self, photo, dets):
        """RGB picture of `photo` with `dets` drawn, its longest side at most `side` pixels."""
        drawn = draw_detections(photo, dets, self.thresh)
        factor = self.side / max(drawn.shape[:2])
        if factor < 1:
            drawn = cv2.resize(drawn, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(drawn[:, :, ::-1])
