"""Mutation check of the exactness-critical code: does the test suite notice a one-token slip?

    python3 -m tests.mutants [--only ID ...] [--list]        (make mutants)

Each entry of MUTATIONS changes the official semantics (docs/) in one place: a snippet that
must occur exactly once in its file is replaced, and only the tests named for it run. The runner
copies the repository (tracked files, new files git does not ignore, and the built lib/nms
extension) into a scratch folder, checks that the selected tests pass there unmutated, then applies
one mutation at a time, runs `pytest -x` on its tests with SSH_SHARED=<../shared> and
SSH_REQUIRE_SHARED=1, and restores the file. A mutation of lib/nms/cpu_nms.pyx rebuilds the
extension in the scratch copy. The working tree is never written.

A mutation no test kills is a missing test; a snippet that is not found exactly once means the code
moved and the entry needs updating. Either makes the exit status 1 (2 for a usage or setup error).
"""
import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSH_SHARED", ROOT.parent / "shared")).resolve()
# Built files the copy needs besides what git lists (ignored by .gitignore).
BUILT = ("lib/nms/*.so",)
# A mutant that hangs its tests this long counts as killed (by the timeout).
TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutation:
    """One semantic mutation: each (original, replacement) of `edits` (every original exactly once in
    `file`) is applied; `tests` are pytest paths or node ids (relative to the repository root)
    expected to fail on it."""

    id: str
    description: str
    file: str
    edits: tuple
    tests: tuple


def _m(id, description, file, original, replacement, *tests):
    """A mutation of one edit."""
    return Mutation(id, description, file, ((original, replacement),), tests)


# prep_image with the means subtracted after the resize instead of before (two edits).
_MEANS = "np.asarray(pixel_means, dtype=np.float32).reshape(1, 1, 3)"
_BLOB_MEANS_AFTER = ((f"    im -= {_MEANS}\n", ""), ("    return im\n", f"    return im - {_MEANS}\n"))

T_BBOX = "tests/lib/test_anchors_bbox.py"
T_DET = "tests/model/test_detector.py"
T_TARGETS = "tests/lib/test_targets.py"
T_LOSSES = "tests/lib/test_losses.py"
T_SOLVER = "tests/lib/test_solver.py"
T_MODEL = "tests/model/test_ssh.py"
T_EXACT = "tests/model/test_ssh_exact.py::test_heads_match_opencv_caffe"
T_NMS = "tests/lib/test_nms.py"
T_EVAL = "tests/lib/evaluation/test_evaluation.py"
T_QUANT = "tests/model/deploy/test_quantize.py"
T_ANON = "tests/lib/test_anonymize.py"
T_OUTPUTS = "tests/scripts/test_test_py_outputs.py"
T_LIVE = "tests/scripts/test_test_py_live.py"
T_DOWNLOAD = "tests/lib/test_download.py"
T_FDDB = "tests/lib/evaluation/test_fddb.py"
T_FDDB_REGIONS = "tests/lib/evaluation/test_fddb_regions.py"

MUTATIONS = (
    # --- boxes, anchors, proposals (lib/bbox.py, lib/anchors.py, lib/proposals.py) ---------------
    _m("bbox-decode-width", "decode: anchor width x2 - x1 without the +1",
       "lib/bbox.py", "    w = anchors[:, 2] - anchors[:, 0] + 1\n", "    w = anchors[:, 2] - anchors[:, 0]\n",
       f"{T_BBOX}::test_encode_decode_by_hand"),
    _m("bbox-decode-x2", "decode: x2 = cx + w/2 - 1 (the usual -1 the official code lacks)",
       "lib/bbox.py", "pcx + 0.5 * pw, pcy + 0.5 * ph]", "pcx + 0.5 * pw - 1, pcy + 0.5 * ph - 1]",
       f"{T_BBOX}::test_encode_decode_by_hand"),
    _m("detector-decode-plus1", "decode without +1 widths, as Detector's output shows it (clipping can hide it)",
       "lib/bbox.py", "    w = anchors[:, 2] - anchors[:, 0] + 1\n    h = anchors[:, 3] - anchors[:, 1] + 1\n    cx",
       "    w = anchors[:, 2] - anchors[:, 0]\n    h = anchors[:, 3] - anchors[:, 1]\n    cx",
       T_DET),
    _m("bbox-encode-width", "encode: gt width without the +1",
       "lib/bbox.py", "    gw = gt[:, 2] - gt[:, 0] + 1\n", "    gw = gt[:, 2] - gt[:, 0]\n",
       f"{T_BBOX}::test_encode_decode_by_hand", T_TARGETS),
    _m("bbox-iou-plus1", "box_iou: intersection without the +1",
       "lib/bbox.py", "wh = (rb - lt + 1).clamp(min=0)", "wh = (rb - lt).clamp(min=0)",
       f"{T_BBOX}::test_iou_uses_plus_one_areas"),
    _m("clip-width", "clip x to [0, W] instead of [0, W - 1]",
       "lib/bbox.py", "clamp(0, width - 1)", "clamp(0, width)",
       f"{T_BBOX}::test_clip_and_min_size", f"{T_DET}::test_decode_one_anchor_by_hand"),
    _m("clip-height", "clip y to [0, H] instead of [0, H - 1]",
       "lib/bbox.py", "clamp(0, height - 1)", "clamp(0, height)",
       f"{T_BBOX}::test_clip_and_min_size", f"{T_DET}::test_decode_one_anchor_by_hand"),
    _m("proposals-top-n", "per-module top N keeps one box too many",
       "lib/proposals.py", "min(top_n, scores.shape[0])", "min(top_n + 1, scores.shape[0])",
       f"{T_DET}::test_top_n_per_module"),
    _m("anchors-centre", "anchor centre 0.5 * base_size instead of 0.5 * (base_size - 1)",
       "lib/anchors.py", "ctr = 0.5 * (base_size - 1)", "ctr = 0.5 * base_size",
       f"{T_BBOX}::test_cell_zero_anchors"),
    _m("anchors-scale-order", "larger scale first (a = 0 must be the smaller anchor)",
       "lib/anchors.py", "        for s in scales:", "        for s in reversed(scales):",
       f"{T_BBOX}::test_cell_zero_anchors"),
    _m("anchors-ratio-order", "anchor ratios enumerated in reverse order",
       "lib/anchors.py", "    for r in ratios:", "    for r in reversed(ratios):",
       f"{T_BBOX}::test_ratio_order_is_ratios_outer_scales_inner"),
    _m("anchors-shift-xy", "grid shift (y, x) instead of (x, y)",
       "lib/anchors.py", "torch.stack([sx, sy, sx, sy], dim=-1)", "torch.stack([sy, sx, sy, sx], dim=-1)",
       f"{T_BBOX}::test_shift_order_is_y_x_a_with_a_fastest"),
    _m("anchors-a-slowest", "anchors flattened (a, y, x) instead of (y, x, a)",
       "lib/anchors.py", "(shifts + base.reshape(1, -1, 4)).reshape(-1, 4)",
       "(shifts.reshape(1, -1, 4) + base.reshape(-1, 1, 4)).reshape(-1, 4)",
       f"{T_BBOX}::test_shift_order_is_y_x_a_with_a_fastest"),
    _m("anchors-m3-border", "M3 allowed_border 0 instead of 512",
       "lib/anchors.py", "scales=(16, 32), allowed_border=512)", "scales=(16, 32), allowed_border=0)",
       f"{T_LOSSES}::test_allowed_border_of_each_module_through_ssh_losses"),
    # --- anchor targets (lib/targets.py) ------------------------------------------------------------
    _m("targets-inside-x2", "inside test x2 <= W + B instead of x2 < W + B",
       "lib/targets.py", "(anchors[:, 2] < im_w + b)", "(anchors[:, 2] <= im_w + b)",
       f"{T_TARGETS}::test_gt_partly_outside_image_inside_test_and_targets"),
    _m("targets-inside-x1", "inside test x1 > -B instead of x1 >= -B",
       "lib/targets.py", "(anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)", "(anchors[:, 0] > -b) & (anchors[:, 1] > -b)",
       f"{T_TARGETS}::test_gt_partly_outside_image_inside_test_and_targets"),
    _m("targets-no-fallback", "no 'every anchor inside' fallback when none is inside",
       "lib/targets.py", "    inside = inside | ~inside.any()\n", "",
       f"{T_TARGETS}::test_m3_allowed_border_512_and_no_anchor_inside_fallback"),
    _m("targets-pos-iou", "positive when IoU > 0.5 instead of >= 0.5",
       "lib/targets.py", "pos = inside & (best >= positive_overlap)", "pos = inside & (best > positive_overlap)",
       T_TARGETS),
    _m("targets-neg-iou", "negative when IoU <= 0.3 instead of < 0.3",
       "lib/targets.py", "neg = inside & (best < negative_overlap)", "neg = inside & (best <= negative_overlap)",
       T_TARGETS),
    _m("targets-pos-override", "positives no longer override negatives",
       "lib/targets.py", "    neg &= ~pos\n", "",
       f"{T_TARGETS}::test_ignored_band_and_no_forced_best_anchor"),
    _m("targets-hard-pos-rank", "OHEM keeps the highest-probability positives",
       "lib/targets.py", "pos = _keep_top(pos, 1 - prob, num_fg, num_fg)", "pos = _keep_top(pos, prob, num_fg, num_fg)",
       f"{T_TARGETS}::test_ohem_keeps_lowest_prob_positives_and_highest_prob_negatives"),
    _m("targets-hard-neg-rank", "OHEM keeps the lowest-probability negatives",
       "lib/targets.py", "neg = _keep_top(neg, prob, batch_size, batch_size - pos.sum())",
       "neg = _keep_top(neg, 1 - prob, batch_size, batch_size - pos.sum())",
       f"{T_TARGETS}::test_ohem_keeps_lowest_prob_positives_and_highest_prob_negatives"),
    _m("targets-fg-budget", "65 positives instead of int(0.25 * 256) = 64",
       "lib/targets.py", "num_fg = int(fg_fraction * batch_size)", "num_fg = int(fg_fraction * batch_size) + 1",
       f"{T_TARGETS}::test_ohem_keeps_lowest_prob_positives_and_highest_prob_negatives"),
    _m("targets-bg-budget", "negative budget 256 - 64 instead of 256 - #positives",
       "lib/targets.py", "neg = _keep_top(neg, prob, batch_size, batch_size - pos.sum())",
       "neg = _keep_top(neg, prob, batch_size, batch_size - num_fg)",
       T_TARGETS),
    _m("targets-n-ex", "outside weights 1 / #positives (the paper) instead of 1 / #labelled (the code)",
       "lib/targets.py", "n_ex = labelled.sum().clamp(min=1)", "n_ex = pos.sum().clamp(min=1)",
       f"{T_TARGETS}::test_gt_partly_outside_image_inside_test_and_targets"),
    _m("targets-regress-positives", "regression targets only for positives, not every inside anchor",
       "lib/targets.py", "torch.where(inside[:, None], deltas, 0.0)", "torch.where(pos[:, None], deltas, 0.0)",
       f"{T_TARGETS}::test_gt_partly_outside_image_inside_test_and_targets"),
    _m("targets-iou-plus1", "anchor/gt IoU width without the +1",
       "lib/targets.py", "    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + 1).clamp(min=0)",
       "    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)",
       f"{T_TARGETS}::test_max_overlaps_equals_dense_iou"),
    _m("targets-argmax-last", "argmax gt: last of equal maxima instead of the first (numpy)",
       "lib/targets.py", 'scatter_reduce(0, ai, first, "amin")', 'scatter_reduce(0, ai, first, "amax")',
       f"{T_TARGETS}::test_max_overlaps_first_gt_wins_ties_and_touching_boxes_overlap"),
    # --- head layout and losses (lib/heads.py, lib/losses.py) -------------------------------------
    _m("heads-cls-layout", "scores read as interleaved (bg, face) pairs, not Caffe's N x 2A x H x W",
       "lib/heads.py", "cls_score.reshape(n, 2, a, h, w).permute(0, 3, 4, 2, 1)",
       "cls_score.reshape(n, a, 2, h, w).permute(0, 3, 4, 1, 2)",
       f"{T_LOSSES}::test_cross_entropy_by_hand_and_caffe_channel_layout", f"{T_DET}::test_decode_one_anchor_by_hand"),
    _m("heads-face-channel", "face probability taken from the background channel",
       "lib/heads.py", "dim=-1)[..., 1]", "dim=-1)[..., 0]",
       f"{T_DET}::test_decode_one_anchor_by_hand"),
    _m("heads-delta-layout", "deltas read as channel j * A + a instead of 4a + j",
       "lib/heads.py", "bbox_pred.permute(0, 2, 3, 1).reshape(n, h * w * (c // 4), 4)",
       "bbox_pred.reshape(n, 4, c // 4, h, w).permute(0, 3, 4, 2, 1).reshape(n, h * w * (c // 4), 4)",
       f"{T_LOSSES}::test_label_and_target_at_yxa_match_caffe_channels"),
    _m("losses-sigma", "module regression loss with smooth-L1 sigma 1 instead of 3",
       "lib/losses.py", "inside_w, outside_w, sigma=3.0):\n    \"\"\"(cls_loss",
       "inside_w, outside_w, sigma=1.0):\n    \"\"\"(cls_loss",
       f"{T_LOSSES}::test_ssh_losses_names_values_and_gradients"),
    _m("losses-smooth-l1-knee", "smooth-L1 switches at 1/sigma instead of 1/sigma^2",
       "lib/losses.py", "torch.where(ad < 1.0 / s2,", "torch.where(ad < 1.0 / sigma,",
       f"{T_LOSSES}::test_smooth_l1_below_and_above_one_ninth", f"{T_LOSSES}::test_smooth_l1_transition_at_one_over_sigma_squared"),
    _m("losses-cls-normalise", "softmax loss divided by #positives instead of #labelled (VALID)",
       "lib/losses.py", "cls_loss = ce / (labels >= 0).sum().clamp(min=1)", "cls_loss = ce / (labels > 0).sum().clamp(min=1)",
       f"{T_LOSSES}::test_cross_entropy_by_hand_and_caffe_channel_layout"),
    _m("losses-no-ohem", "ssh_losses samples at random instead of OHEM on the heads' probabilities",
       "lib/losses.py", "geo.allowed_border, face_probs(cls_score.detach())[0],", "geo.allowed_border, None,",
       f"{T_LOSSES}::test_ohem_through_ssh_losses_uses_the_face_probability_of_the_heads"),
    # --- solver (lib/solver.py, CAFFE_LAYERS in model/ssh.py) --------------------------------------
    _m("solver-lr-policy", "lr gamma ** (it / stepsize) (continuous) instead of floor (step)",
       "lib/solver.py", "self.gamma ** (iteration // self.stepsize)", "self.gamma ** (iteration / self.stepsize)",
       f"{T_SOLVER}::test_official_step_schedule"),
    _m("solver-torch-momentum", "torch.optim.SGD momentum (lr outside the history) instead of Caffe's",
       "lib/solver.py", "history.mul_(momentum).add_(d_p, alpha=lr)\n                p.sub_(history)",
       "history.mul_(momentum).add_(d_p)\n                p.sub_(history, alpha=lr)",
       f"{T_SOLVER}::test_two_steps_match_hand_computed_caffe_update",
       f"{T_SOLVER}::test_multiplied_group_across_an_lr_change_keeps_lr_inside_the_history"),
    _m("solver-no-decay", "weight decay dropped from the update",
       "lib/solver.py", "d_p = p.grad.add(p, alpha=decay) if decay else p.grad", "d_p = p.grad",
       f"{T_SOLVER}::test_two_steps_match_hand_computed_caffe_update"),
    _m("solver-lr-mult", "set_base_lr ignores the group's lr_mult",
       "lib/solver.py", 'group["lr"] = base_lr * group.get("lr_mult", 1.0)', 'group["lr"] = base_lr',
       f"{T_SOLVER}::test_group_multipliers_and_parameters_without_gradient"),
    _m("layers-module-bias-decay", "SSH-module biases decayed (decay_mult 1 instead of 0)",
       "model/ssh.py", "_MODULE = ((1, 2), (1, 0))", "_MODULE = ((1, 2), (1, 1))",
       f"{T_MODEL}::test_param_groups"),
    _m("layers-trunk-bias-lr", "VGG/fusion biases at lr_mult 1 instead of 2",
       "model/ssh.py", "_TRUNK = ((1, 2), (1, 1))", "_TRUNK = ((1, 1), (1, 1))",
       f"{T_MODEL}::test_param_groups"),
    _m("layers-conv2-trained", "conv2_x trained (only conv1_x frozen)",
       "model/ssh.py", 'n.startswith(("conv1", "conv2"))', 'n.startswith("conv1")',
       f"{T_MODEL}::test_frozen_parameters"),
    _m("layers-deconv-trained", "bilinear deconvolution trained (lr_mult 1 instead of 0)",
       "model/ssh.py", '"fusion.conv5_128_up", (0,), (0,), "bilinear")', '"fusion.conv5_128_up", (1,), (0,), "bilinear")',
       f"{T_MODEL}::test_frozen_parameters"),
    # --- network (model/vgg16.py, model/ssh.py, model/modules.py) ------------------------------------
    _m("pool6-floor", "pool6 with floor rounding instead of Caffe's ceil",
       "model/ssh.py", "pool6 = F.max_pool2d(conv5_3, 2, 2, ceil_mode=True)", "pool6 = F.max_pool2d(conv5_3, 2, 2, ceil_mode=False)",
       f"{T_MODEL}::test_output_sizes_spec_examples"),
    _m("vgg-pool-floor", "pool2..pool4 with floor rounding",
       "model/vgg16.py", "x = F.max_pool2d(x, 2, 2, ceil_mode=True)", "x = F.max_pool2d(x, 2, 2, ceil_mode=False)",
       f"{T_MODEL}::test_output_sizes_spec_examples"),
    _m("vgg-pool1-floor", "pool1 with floor rounding (odd heights lose their last row)",
       "model/vgg16.py", "else F.max_pool2d(self._conv1(x), 2, 2, ceil_mode=True)",
       "else F.max_pool2d(self._conv1(x), 2, 2, ceil_mode=False)",
       T_EXACT),
    _m("vgg-strip-halo", "stage-1 strips read a 1-row halo instead of 2",
       "model/vgg16.py", "a0, a1 = max(0, r0 - 2), min(h, r1 + 2)", "a0, a1 = max(0, r0 - 1), min(h, r1 + 1)",
       f"{T_MODEL}::test_inference_strips_equal_one_piece"),
    _m("fusion-crop-offset", "conv5_128_crop takes the bottom-right H8 x W8 instead of offset 0",
       "model/modules.py", "rows = torch.arange(conv4.shape[2], device=up.device)",
       "rows = torch.arange(conv4.shape[2], device=up.device) + (up.shape[2] - conv4.shape[2])",
       T_EXACT),
    # (A ReLU after conv4_fuse would be an equivalent mutant: both summands are already >= 0, the
    # upsampled one being a ReLU output through a non-negative kernel without bias.)
    _m("fusion-no-conv5-relu", "conv5_128 upsampled without its ReLU (conv5_128_relu)",
       "model/modules.py", "self.conv5_128_up(F.relu(self.conv5_128(conv5_3), inplace=True))",
       "self.conv5_128_up(self.conv5_128(conv5_3))",
       T_EXACT),
    _m("bilinear-kernel", "BilinearFiller centre c = k / 2f instead of (k - 1) / 2f",
       "model/modules.py", "c = (size - 1) / (2.0 * f)", "c = size / (2.0 * f)",
       f"{T_MODEL}::test_init_weights", f"{T_MODEL}::test_deconv_edges_and_interior"),
    _m("module-concat-order", "mi@ssh_output concatenates [context, 3x3] instead of [3x3, context]",
       "model/modules.py", "torch.cat([self.conv3x3(x), self.context(x)], dim=1)",
       "torch.cat([self.context(x), self.conv3x3(x)], dim=1)",
       T_EXACT),
    # --- inference (model/detector.py, lib/postprocess.py, lib/blob.py, lib/image_io.py, lib/nms/) ----
    _m("detector-score-ge", "detections kept at score >= 0.05 instead of > 0.05",
       "lib/postprocess.py", "keep = scores > self.score_thresh", "keep = scores >= self.score_thresh",
       f"{T_DET}::test_score_threshold_is_strict"),
    _m("detector-pyramid-levels", "pyramid keeps M3 on the largest level (scales())",
       "model/detector.py", "MODULE_NAMES[:2] if t == largest else MODULE_NAMES", "MODULE_NAMES",
       f"{T_DET}::test_pyramid_levels_match_the_spec"),
    _m("detector-pyramid-detect", "detect() pools every module of every level (ignores the M3 rule)",
       "lib/postprocess.py", "self.candidates(heads, scale, blob_hw, modules)", "self.candidates(heads, scale, blob_hw)",
       T_DET),
    _m("detector-scale-back", "boxes multiplied by the scale instead of divided",
       "lib/postprocess.py", "return torch.cat(boxes) / scale, torch.cat(scores)", "return torch.cat(boxes) * scale, torch.cat(scores)",
       f"{T_DET}::test_decode_one_anchor_by_hand"),
    _m("detector-rgb", "Detector feeds RGB instead of BGR",
       "model/detector.py", "image.shape[2] == 3:\n        return image\n", "image.shape[2] == 3:\n        return image[:, :, ::-1]\n",
       T_DET),
    _m("detector-means-rgb", "Detector subtracts the means in R, G, B order",
       "model/detector.py", "np.asarray(pixel_means, dtype=np.float32).reshape(3)",
       "np.asarray(pixel_means, dtype=np.float32).reshape(3)[::-1].copy()",
       T_DET),
    _m("score-thresh-default", "the official test_net score threshold 0.5 instead of 0.05",
       "lib/postprocess.py", "SCORE_THRESH = 0.05", "SCORE_THRESH = 0.5",
       f"{T_DET}::test_score_threshold_is_strict"),
    _m("detector-init-thresh", "Detector.from_config's default score threshold 0.5 instead of 0.05",
       "model/detector.py", 'device="cpu", precision="fp32", score_thresh=SCORE_THRESH)',
       'device="cpu", precision="fp32", score_thresh=0.5)',
       f"{T_DET}::test_score_threshold_is_strict"),
    _m("detector-default-thresh", "build_detector default score threshold 0.5 (eval.py's curve is cut)",
       "model/detector.py", 'precision="fp32", score_thresh=SCORE_THRESH, backend=',
       'precision="fp32", score_thresh=0.5, backend=',
       f"{T_DET}::test_build_detector_keeps_the_official_test_threshold"),
    _m("precision-bf16-as-fp16", "precision bf16 autocasts to float16",
       "model/precision.py", 'AUTOCAST_DTYPES = {"bf16": "bfloat16"', 'AUTOCAST_DTYPES = {"bf16": "float16"',
       f"{T_DET}::test_precision_runs_the_network_under_its_autocast_and_decodes_in_float32"),
    Mutation("blob-means-after-resize", "means subtracted after the resize", "lib/blob.py", _BLOB_MEANS_AFTER,
             ("tests/lib/test_blob.py", f"{T_DET}::test_network_input_is_bgr_minus_the_means")),
    _m("calibration-no-means", "calibration blobs without the pixel means (not what detection feeds the network)",
       "model/deploy/calibration.py", "prep_image(self.images[i], self.pixel_means, scale)",
       "prep_image(self.images[i], np.zeros(3, np.float32), scale)",
       f"{T_QUANT}::test_calibration_images_spread_over_subfolders_and_blobs_follow_the_test_levels"),
    _m("calibration-top-folder-only", "calibration images (and test.py --dir's) only from the folder itself, not its "
       "subfolders", "lib/sources.py", "for path in sorted(folder.rglob(\"*\")):", "for path in sorted(folder.glob(\"*\")):",
       f"{T_QUANT}::test_calibration_images_spread_over_subfolders_and_blobs_follow_the_test_levels"),
    _m("int8-strip-halo-1", "int8 stage-1 strips read a 1-row halo (two 3x3 convolutions need 2)",
       "model/deploy/onnx_runtime.py", "a0, a1 = max(0, r0 - 2), min(height, r1 + 2)",
       "a0, a1 = max(0, r0 - 1), min(height, r1 + 1)",
       f"{T_QUANT}::test_int8_strips_give_the_whole_graphs_heads_bit_for_bit"),
    _m("keep-float-ignored", "--keep-float layers quantized anyway",
       "model/deploy/quantize.py", "nodes_to_exclude=excluded", "nodes_to_exclude=[]",
       f"{T_QUANT}::test_keep_float_leaves_those_convolutions_unquantized"),
    _m("agreement-many-to-one", "one fp32 detection matched by several reduced-precision ones",
       "model/deploy/agreement.py", "            taken[best] = True\n", "",
       f"{T_QUANT}::test_matched_count_is_one_to_one_at_the_thresholds"),
    _m("blob-interpolation", "INTER_AREA instead of INTER_LINEAR",
       "lib/blob.py", "fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR", "fx=scale, fy=scale, interpolation=cv2.INTER_AREA",
       "tests/lib/test_blob.py"),
    _m("blob-scale-round", "MAX_SIZE test on s * longer side without np.round",
       "lib/blob.py", "np.round(s * max(height, width)) > max_size", "s * max(height, width) > max_size",
       "tests/lib/test_blob.py::test_compute_scale_by_hand"),
    _m("imread-unchanged", "images read with IMREAD_UNCHANGED instead of imread's default",
       "lib/image_io.py", "        image = cv2.imread(str(path))\n", "        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)\n",
       "tests/lib/test_image_io.py"),
    _m("imread-no-exif", "EXIF orientation ignored when reading",
       "lib/image_io.py", "        image = cv2.imread(str(path))\n",
       "        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)\n",
       "tests/lib/test_image_io.py::test_exif_orientation_is_applied_as_cv2_imread_does",
       "tests/lib/datasets/test_loader.py::test_exif_rotated_training_image_is_upright_with_its_roidb_size"),
    _m("image-size-untransposed", "image_size ignores EXIF transposition",
       "lib/image_io.py", "return (height, width) if orientation in _TRANSPOSED else (width, height)", "return (width, height)",
       "tests/lib/test_image_io.py::test_exif_orientation_is_applied_as_cv2_imread_does"),
    _m("nms-plus-one", "NMS areas without the +1",
       "lib/nms/__init__.py", "boxes[:, 2:] + 1], dim=1)", "boxes[:, 2:]], dim=1)",
       f"{T_NMS}::test_plus_one_areas_decide",
       "tests/model/deploy/test_onnx_detector.py::test_min_size_filter_and_plus_one_nms_decide_the_output"),
    _m("nms-double-thresh", "torchvision NMS compares with the double threshold, not float32",
       "lib/nms/__init__.py", "scores.float(), _float32(thresh))", "scores.float(), thresh)",
       f"{T_NMS}::test_threshold_compared_in_float32"),
    _m("nms-cython-ge", "Cython NMS suppresses IoU >= thresh instead of > thresh (rebuilds the extension)",
       "lib/nms/cpu_nms.pyx", "if inter / (iarea + areas[j] - inter) > thresh:", "if inter / (iarea + areas[j] - inter) >= thresh:",
       f"{T_NMS}::test_iou_equal_to_threshold_is_kept"),
    _m("config-test-nms", "default TEST.NMS_THRESH 0.4 instead of 0.3",
       "lib/config.py", '"NMS_THRESH": 0.3,\n        # Top detections kept per module', '"NMS_THRESH": 0.4,\n        # Top detections kept per module',
       "tests/lib/test_config.py::test_defaults_equal_the_official_default_config_yml"),
    _m("config-means-rgb", "default PIXEL_MEANS in R, G, B order",
       "lib/config.py", '"PIXEL_MEANS": [[[102.9801, 115.9465, 122.7717]]]', '"PIXEL_MEANS": [[[122.7717, 115.9465, 102.9801]]]',
       "tests/lib/test_config.py::test_defaults_equal_the_official_default_config_yml"),
    # --- training data and engine (lib/datasets/, lib/training/) -------------------------------------
    _m("wider-clamp", "annotation x2 clamped to W - 1 instead of W",
       "lib/datasets/wider.py", "x2 = np.minimum(x1 + r[:, 2], width)", "x2 = np.minimum(x1 + r[:, 2], width - 1)",
       "tests/lib/datasets/test_wider.py::test_official_box_rule_hand_computed"),
    _m("wider-round", "annotations rounded half to even instead of MATLAB's half away from zero",
       "lib/datasets/wider.py", "return np.sign(a) * np.floor(np.abs(a) + 0.5)", "return np.round(a)",
       "tests/lib/datasets/test_wider.py"),
    _m("roidb-flip", "flipped x1' = W - x2 instead of W - x2 - 1",
       "lib/datasets/roidb.py", "flipped[:, 0] = width - boxes[:, 2] - 1", "flipped[:, 0] = width - boxes[:, 2]",
       "tests/lib/datasets/test_roidb.py::test_flip_boxes_hand_computed"),
    _m("loader-flip-axis", "training image flipped vertically instead of horizontally",
       "lib/datasets/loader.py", "image = image[:, ::-1]", "image = image[::-1]",
       "tests/lib/datasets/test_loader.py::test_flipped_box_covers_the_flipped_pixels"),
    _m("train-iter-size-sum", "accumulated gradient summed over iter_size instead of averaged",
       "lib/training/step.py", "loss = sum(losses.values()) / len(items)", "loss = sum(losses.values())",
       "tests/lib/test_training.py::test_train_step_accumulates_the_mean_gradient"),
    _m("train-amp-cpu-fp16", "--amp autocasts to float16 on the CPU instead of bfloat16",
       "lib/training/step.py", "        return torch.float16\n    return torch.bfloat16\n",
       "        return torch.float16\n    return torch.float16\n",
       "tests/lib/test_training.py::test_amp_autocasts_to_bfloat16_on_the_cpu"),
    _m("rank-sync-off-step", "the ranks meet one step after rank 0's snapshot and pictures, not at it",
       "lib/training/hooks.py", "if self.trainer.iter % self.every == 0:\n            wait_for_ranks",
       "if self.trainer.iter % self.every == 1:\n            wait_for_ranks",
       "tests/scripts/test_train_dist_py.py::test_ranks_wait_for_rank_0s_snapshot_and_pictures_beyond_the_timeout"),
    _m("val-no-copy", "validation detects on the training network itself, not on a copy",
       "lib/training/validation.py", "self.make_detector(copy.deepcopy(self.net))", "self.make_detector(self.net)",
       "tests/lib/test_validation.py::test_validation_gives_eval_py_ap_and_leaves_training_unchanged"),
    _m("val-first-images", "--val-images takes the first K val images instead of K spread over the split",
       "lib/training/validation.py", "[names[i * len(names) // count] for i in range(count)]", "names[:count]",
       "tests/lib/test_validation.py::test_val_subset_spreads_the_images_over_the_split"),
    _m("val-rank0-share", "rank 0 scores its own share of the validation images only",
       "lib/training/validation.py", "for share in shares for name, d in share.items()",
       "for share in shares[:1] for name, d in share.items()",
       "tests/scripts/test_train_dist_py.py::test_validation_is_shared_by_the_ranks_and_gives_eval_py_ap"),
    _m("gt-save-zero-based", "save_ground_truth writes 0-based face indices into gt_list",
       "lib/evaluation/ground_truth.py", "(gt.keep[setting][i] + 1).reshape(-1, 1)", "gt.keep[setting][i].reshape(-1, 1)",
       "tests/lib/test_validation.py::test_ground_truth_saved_as_the_official_mat_files_loads_back_equal"),
    # --- WIDER evaluation (lib/evaluation/) -----------------------------------------------------------
    _m("int32-round-half", "MATLAB int32() rounds halves toward zero",
       "lib/evaluation/matlab_int.py", "np.abs(x - t) >= 0.5", "np.abs(x - t) > 0.5",
       f"{T_EVAL}::test_int32_conversion_rounds_half_away_saturates_and_zeroes_nan"),
    _m("int32-div-trunc", "int32 division truncates (C) instead of rounding (MATLAB)",
       "lib/evaluation/matlab_int.py", "return to_int32(a.astype(np.float64) / b.astype(np.float64))",
       "return to_int32(np.trunc(a.astype(np.float64) / b.astype(np.float64)))",
       T_EVAL),
    _m("overlap-plus1", "boxoverlap intersection without the +1",
       "lib/evaluation/boxoverlap.py", "    w = mi.add(mi.sub(x2, x1), 1)\n", "    w = mi.sub(x2, x1)\n",
       T_EVAL),
    _m("overlap-area-sum", "boxoverlap union in double (area sum not rounded to int32)",
       "lib/evaluation/boxoverlap.py", "union = mi.sub(mi.to_int32(a_area + b_area), inter)", "union = a_area + b_area - inter",
       T_EVAL),
    _m("overlap-corners", "boxoverlap max() without rounding the prediction corner to int32",
       "lib/evaluation/boxoverlap.py", "return np.maximum(a, mi.to_int32(np.where(np.isnan(b), -np.inf, b)))",
       "return np.maximum(a, np.where(np.isnan(b), -np.inf, b))",
       T_EVAL),
    _m("eval-last-match", "prediction assigned to the last overlapping gt instead of the first",
       "lib/evaluation/evaluation.py", "idx = overlap.argmax(axis=1)",
       "idx = overlap.shape[1] - 1 - overlap[:, ::-1].argmax(axis=1)",
       T_EVAL),
    _m("eval-threshold-strict", "a prediction counts when score > t instead of >= t",
       "lib/evaluation/evaluation.py", 'thresholds(thresh_num), side="left")', 'thresholds(thresh_num), side="right")',
       T_EVAL),
    _m("norm-score-double", "norm_score divides in float64 (no float32 cast of the scores)",
       "lib/evaluation/norm_score.py", "(p[:, 4].astype(np.float32) - low)", "(p[:, 4] - low)",
       T_EVAL),
    _m("norm-score-max-start", "norm_score max starts at -realmax instead of realmin('single')",
       "lib/evaluation/norm_score.py", "top = np.fmax(REALMIN_SINGLE,", "top = np.fmax(-REALMAX_SINGLE,",
       T_EVAL),
    _m("voc-ap-nan", "VOCap envelope with NaN-propagating max",
       "lib/evaluation/voc_ap.py", "np.fmax.accumulate(mpre[::-1])[::-1]", "np.maximum.accumulate(mpre[::-1])[::-1]",
       T_EVAL),
    _m("voc-ap-envelope", "VOCap envelope taken from the left instead of the right",
       "lib/evaluation/voc_ap.py", "np.fmax.accumulate(mpre[::-1])[::-1]", "np.fmax.accumulate(mpre)",
       T_EVAL),
    _m("read-pred-nan-last", "predictions sorted with NaN scores last (MATLAB sorts them first)",
       "lib/evaluation/read_pred.py", "[np.flatnonzero(nan), rest[np.argsort(-s[rest], kind=\"stable\")]]",
       "[rest[np.argsort(-s[rest], kind=\"stable\")], np.flatnonzero(nan)]",
       "tests/lib/evaluation/test_read_pred.py::test_read_pred_sorts_descending_stable_nan_first"),
    _m("wider-txt-round", "prediction files round the corners instead of truncating (int())",
       "lib/evaluation/wider_txt.py", "(int(x1), int(y1), int(x2) - int(x1), int(y2) - int(y1), score)",
       "(round(x1), round(y1), round(x2) - round(x1), round(y2) - round(y1), score)",
       "tests/lib/evaluation/test_wider_txt.py"),
    _m("wider-txt-score-format", "scores written with %f instead of %g",
       "lib/evaluation/wider_txt.py", '"%d %d %d %d %g "', '"%d %d %d %d %f "',
       "tests/lib/evaluation/test_wider_txt.py"),
    _m("wider-txt-thresh", "prediction files keep score >= 0.05 instead of > 0.05",
       "lib/evaluation/wider_txt.py", "dets[dets[:, 4] > SCORE_THRESH]", "dets[dets[:, 4] >= SCORE_THRESH]",
       "tests/lib/evaluation/test_wider_txt.py"),
    # --- FDDB evaluation (lib/evaluation/fddb*.py, hungarian.py) ----------------------------------------------
    _m("fddb-centre-double", "ellipse centres rounded from the double, not from cvPoint2D32f's float",
       "lib/evaluation/fddb_regions.py", "centres = np.rint(e[:, 3:5].astype(np.float32))", "centres = np.rint(e[:, 3:5])",
       T_FDDB_REGIONS),
    _m("fddb-axes-rounded", "ellipse radii rounded instead of truncated by (int)",
       "lib/evaluation/fddb_regions.py", "axes = np.trunc(e[:, 0:2])", "axes = np.rint(e[:, 0:2])", T_FDDB_REGIONS),
    _m("fddb-rect-exclusive", "a rectangle's far corner left out of its pixels",
       "lib/evaluation/fddb_regions.py", "hi = np.minimum(np.maximum(p1, p2), [width - 1, height - 1])",
       "hi = np.minimum(np.maximum(p1, p2) - 1, [width - 1, height - 1])", T_FDDB_REGIONS),
    _m("fddb-discrete-ge", "a matched pair with overlap 0.5 counts as a discrete true positive (>= instead of >)",
       "lib/evaluation/fddb.py", "disc += overlap > DISCRETE_IOU", "disc += overlap >= DISCRETE_IOU", T_FDDB),
    _m("fddb-optimal-assignment", "a maximal assignment (scipy) instead of the tool's Hungarian method",
       "lib/evaluation/fddb.py", "assigned = hungarian_max((sub.T if transpose else sub).tolist())",
       "assigned = __import__('scipy.optimize').optimize.linear_sum_assignment(sub.T if transpose else sub, "
       "maximize=True)[1].tolist()", T_FDDB),
    _m("fddb-ties-last", "among equal overlaps a lone row takes the last column, not the first",
       "lib/evaluation/hungarian.py", "return [next(j for j, x in enumerate(row) if abs(top - x) < EPS)]",
       "return [max(j for j, x in enumerate(row) if abs(top - x) < EPS)]",
       "tests/lib/evaluation/test_hungarian.py", T_FDDB),
    _m("fddb-valid-strict", "at threshold t a detection is valid when its score is > t instead of >= t",
       "lib/evaluation/fddb.py", "valid = len(det_scores) - np.searchsorted(np.sort(det_scores), thresholds, side=\"left\")",
       "valid = len(det_scores) - np.searchsorted(np.sort(det_scores), thresholds, side=\"right\")", T_FDDB),
    _m("fddb-merge-no-carry", "the merge adds an image's discrete TPs only at its own thresholds",
       "lib/evaluation/fddb.py", "disc_total = np.cumsum(disc_delta[::-1])[::-1][:-1]", "disc_total = disc_delta[:-1]",
       T_FDDB),
    _m("fddb-merge-first-step", "the merge counts an image's result at its largest threshold <= t, not its smallest >= t",
       "lib/evaluation/fddb.py", "cont[:pos[-1] + 1] += np.repeat(image_cont, np.diff(pos, prepend=-1))",
       "cont[pos[0]:] += np.repeat(image_cont, np.diff(np.append(pos, len(cont))))", T_FDDB),
    # --- caffemodel reading (model/weights/caffemodel.py) -----------------------------------------------------
    _m("caffemodel-big-endian", "packed float data read big-endian",
       "model/weights/caffemodel.py", 'dtype = "<f4" if number == 5 else "<f8"', 'dtype = ">f4" if number == 5 else "<f8"',
       "tests/model/weights/test_caffemodel.py"),
    _m("caffemodel-legacy-dims", "legacy num/channels/height/width stored in reverse order",
       "model/weights/caffemodel.py", "legacy[number - 1] = _signed(value, 32, key_pos)", "legacy[4 - number] = _signed(value, 32, key_pos)",
       "tests/model/weights/test_caffemodel.py"),
    _m("caffemodel-shape-order", "BlobShape dims reversed",
       "model/weights/caffemodel.py", "shape = legacy if shape is None else shape\n", "shape = legacy if shape is None else shape[::-1]\n",
       "tests/model/weights/test_caffemodel.py"),
    _m("caffemodel-float-first", "float data preferred over double_data (Caffe prefers double)",
       "model/weights/caffemodel.py", "values = chunks[8] or chunks[5]", "values = chunks[5] or chunks[8]",
       "tests/model/weights/test_caffemodel.py"),
    _m("mask-one-pixel-short", "anonymisation masks end one pixel before the box's inclusive corner",
       "lib/anonymize.py", "np.floor(centre + half - 1) + 1", "np.floor(centre + half - 1)",
       T_ANON, f"{T_OUTPUTS}::test_anonymised_pictures_change_the_masks_and_nothing_else"),
    _m("hold-one-frame-short", "--hold K keeps a missed face masked for K - 1 frames",
       "lib/anonymize.py", "frame - self._seen <= self.hold", "frame - self._seen < self.hold",
       T_ANON, f"{T_LIVE}::test_hold_keeps_a_missed_face_masked"),
    _m("hold-no-matching", "a face detected again is masked twice (its remembered box kept beside the new one)",
       "lib/anonymize.py", "same = (iou >= self.iou).any(1).numpy()", "same = (iou > 2).any(1).numpy()", T_ANON),
    _m("crop-margin-half", "--crop-margin M grows a crop by M/2 of the box on each side",
       "lib/outputs.py", "scaled_rects(dets, 1 + 2 * margin)", "scaled_rects(dets, 1 + margin)",
       "tests/lib/test_outputs.py", f"{T_OUTPUTS}::test_json_crops_and_wider_files_of_a_folder_tree"),
    _m("wider-files-thresholded", "--save-wider writes only the detections above --thresh, not all above 0.05",
       "lib/sinks.py", "write_image_detections(self.folder, result.item.rel, result.dets)",
       "write_image_detections(self.folder, result.item.rel, result.kept)",
       f"{T_OUTPUTS}::test_json_crops_and_wider_files_of_a_folder_tree"),
    _m("every-shifted", "--every N detects on frames 1, N + 1, ... (frame 0 reuses nothing)",
       "lib/detection_run.py", "is_due = position % every == 0", "is_due = position % every == 1",
       "tests/lib/test_detection_run.py"),
    _m("short-body-complete", "a download cut short of its Content-Length is taken as complete",
       "lib/utils/download.py", "if total is not None and have < total:", "if total is not None and have < 0:",
       T_DOWNLOAD),
    _m("integrity-size-unchecked", "a weight file of another size than its record passes the size check",
       "lib/utils/integrity.py", "if size != record[\"size\"]:", "if False:", "tests/lib/test_integrity.py"),
    _m("archive-links-allowed", "an archive member that is a symbolic link is unpacked",
       "lib/utils/download.py", "    if member.issym():", "    if False:", T_DOWNLOAD),
    _m("bad-rows-kept", "a box row with an Inf score is scored (the APs collapse)",
       "lib/evaluation/read_pred.py", "    boxes, dropped = drop_bad_rows(boxes, str(path))\n",
       "    dropped = []\n", "tests/lib/evaluation/test_read_pred.py"),
    _m("zero-size-dropped", "a box row of width 0 (one pixel, inclusive corners) is left out",
       "lib/evaluation/read_pred.py", "_LOW = np.array([-_DOUBLE_MAX, -_DOUBLE_MAX, 0, 0, -_SINGLE_MAX])",
       "_LOW = np.array([-_DOUBLE_MAX, -_DOUBLE_MAX, 1e-300, 1e-300, -_SINGLE_MAX])",
       "tests/lib/evaluation/test_read_pred.py"),
    _m("thresh-unmasked-silent", "an anonymised picture that masks nothing is not reported",
       "lib/detection_run.py", "        if masking and not len(kept):", "        if False:",
       f"{T_OUTPUTS}::test_anonymised_pictures_that_mask_nothing_are_named"),
    _m("url-query-secret-kept", "a token= query value is shown in messages",
       "lib/utils/redact.py", 'f"{name}={HIDDEN}" if value', 'f"{name}={value}" if value', "tests/lib/test_redact.py"),
)


# ---------------------------------------------------------------------------------------- runner


@dataclass
class Result:
    mutation: Mutation
    killed_by: str  # first failing test id, or "" when the mutant survived
    seconds: float
    problem: str = ""  # why the mutation was refused (snippet not found once, test file missing)


def check_mutation(m, root):
    """Why `m` cannot run against the tree at `root`, or "" when it can."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    text = path.read_text(encoding="utf-8")
    for k, (original, replacement) in enumerate(m.edits, 1):
        count = text.count(original)
        if count != 1:
            return f"its snippet {k} occurs {count} times in {m.file} (must be exactly once)"
        if replacement == original:
            return f"its replacement {k} equals the original"
    missing = [t for t in m.tests if not (root / t.split("::")[0]).is_file()]
    if not m.tests or missing:
        return f"test file(s) not found: {', '.join(missing)}" if missing else "it names no tests"
    return ""


def repository_files(root):
    """Relative paths of the tracked files and of the new files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout.decode()
    files = sorted({p for p in out.split("\0") if p})
    return files + sorted(os.path.relpath(p, root) for pattern in BUILT for p in glob.glob(str(root / pattern)))


def copy_tree(root, scratch):
    """Copy the repository files (and the built extension) into `scratch`; returns how many."""
    count = 0
    for rel in repository_files(root):
        src = root / rel
        if not (src.is_file() or src.is_symlink()):
            continue  # deleted in the working tree, or a submodule folder
        dst = scratch / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
        count += 1
    return count


def union_tests(mutations):
    """The selected tests of `mutations`, without node ids whose whole file is selected, in first-use order."""
    tests = list(dict.fromkeys(t for m in mutations for t in m.tests))
    files = {t for t in tests if "::" not in t}
    return [t for t in tests if "::" not in t or t.split("::")[0] not in files]


_OUTCOME = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$")


def failures(output):
    """Test ids of the FAILED / ERROR lines of pytest's short summary, in order."""
    return [match.group(1) for line in output.splitlines() if (match := _OUTCOME.match(line))]


def run_pytest(python, scratch, tests, env, stop_first):
    """(exit code, combined output) of pytest on `tests` in `scratch`; exit code None on timeout."""
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-x"] if stop_first else []), *tests]
    try:
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace")
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


def build_extension(python, scratch):
    """Rebuild lib/nms in the scratch copy as `make -C lib` does; returns an error text or ""."""
    proc = subprocess.run([python, "setup.py"], cwd=scratch / "lib", capture_output=True, text=True)
    shutil.rmtree(scratch / "lib" / "build", ignore_errors=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr).strip().splitlines()[-1:][0]


def run_mutation(m, python, scratch, env):
    """Apply `m` in the scratch copy, run its tests, restore the file; returns a Result."""
    path = scratch / m.file
    original = path.read_bytes()
    built = [Path(p) for p in glob.glob(str(scratch / "lib" / "nms" / "*.so"))] if m.file.endswith(".pyx") else []
    saved = {p: p.read_bytes() for p in built}
    start = time.monotonic()
    try:
        text = original.decode("utf-8")
        for snippet, replacement in m.edits:
            text = text.replace(snippet, replacement, 1)
        path.write_text(text, encoding="utf-8")
        if m.file.endswith(".pyx"):
            error = build_extension(python, scratch)
            if error:
                return Result(m, f"(extension build failed: {error})", time.monotonic() - start)
        code, output = run_pytest(python, scratch, m.tests, env, stop_first=True)
        if code is None:
            killed = f"(timeout after {TIMEOUT_S} s)"
        elif code == 0:
            killed = ""
        else:
            found = failures(output)
            killed = found[0] if found else f"(pytest exit {code})"
        return Result(m, killed, time.monotonic() - start)
    finally:
        path.write_bytes(original)
        for p in scratch.glob("lib/nms/*.so"):
            if p not in saved:
                p.unlink()
        for p, data in saved.items():
            p.write_bytes(data)


def tests_interpreter():
    """The interpreter that runs pytest: this one, or the repository's .venv when this one lacks the
    test dependencies (so that a plain `python3 -m tests.mutants` works too)."""
    if all(importlib.util.find_spec(name) for name in ("pytest", "torch")):
        return sys.executable
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.is_file():
        print(f"note: {sys.executable} lacks pytest or torch; the tests run with {venv}", flush=True)
        return str(venv)
    raise SystemExit(f"mutants: {sys.executable} cannot run the tests (no pytest or torch) and there is no "
                     f"{venv}: run `make mutants`")


def print_table(results):
    rows = [("id", "mutation", "killed by", "seconds")]
    for r in results:
        verdict = f"REFUSED: {r.problem}" if r.problem else (r.killed_by or "SURVIVED")
        rows.append((r.mutation.id, r.mutation.description, verdict, "-" if r.problem else f"{r.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for k, row in enumerate(rows):
        print(" | ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3].rjust(7)]))
        if k == 0:
            print("-+-".join(["-" * w for w in widths] + ["-" * 7]))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tests.mutants", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ids = [m.id for m in MUTATIONS]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"mutants: duplicate mutation ids {', '.join(duplicates)}")
    selected = list(MUTATIONS)
    if args.only:
        unknown = [i for i in args.only if i not in ids]
        if unknown:
            print(f"mutants: unknown mutation id(s) {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        selected = [m for m in MUTATIONS if m.id in args.only]
    if args.list:
        for m in selected:
            print(f"{m.id}: {m.description}\n    {m.file}; tests: {' '.join(m.tests)}")
        print(f"{len(selected)} mutations")
        return 0

    start = time.monotonic()
    python = tests_interpreter()
    env = dict(os.environ, SSH_SHARED=str(SHARED), SSH_REQUIRE_SHARED="1", PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory(prefix="ssh-mutants-") as tmp:
        scratch = Path(tmp)
        copied = copy_tree(ROOT, scratch)
        # Checked on the copy: the working tree may change while the run goes on.
        refused = {m.id: problem for m in selected if (problem := check_mutation(m, scratch))}
        for mid, problem in refused.items():
            print(f"mutants: refusing mutation {mid}: {problem}", file=sys.stderr, flush=True)
        runnable = [m for m in selected if m.id not in refused]
        results = {m.id: Result(m, "", 0.0, refused[m.id]) for m in selected if m.id in refused}
        tests = union_tests(runnable)
        print(f"{copied} files copied to {scratch}; {len(runnable)} mutations, {len(tests)} test selections; "
              f"SSH_SHARED={SHARED}", flush=True)
        if runnable:
            t0 = time.monotonic()
            code, output = run_pytest(python, scratch, tests, env, stop_first=False)
            if code != 0:
                failed = failures(output) or [line for line in output.splitlines() if line.startswith("ERROR: ")]
                print(output[-3000:], file=sys.stderr)
                print(f"mutants: the selected tests do not pass on the unmutated copy "
                      f"({'timeout' if code is None else f'pytest exit {code}'}); failing: "
                      f"{', '.join(failed) if failed else '(see the output above)'}", file=sys.stderr)
                return 2
            print(f"unmutated: the selected tests pass ({time.monotonic() - t0:.1f} s)", flush=True)
        for k, m in enumerate(runnable, 1):
            r = results[m.id] = run_mutation(m, python, scratch, env)
            print(f"[{k}/{len(runnable)}] {m.id}: {r.killed_by or 'SURVIVED'} ({r.seconds:.1f} s)", flush=True)
    ordered = [results[m.id] for m in selected]
    print()
    print_table(ordered)
    killed = sum(1 for r in ordered if not r.problem and r.killed_by)
    survived = [r.mutation.id for r in ordered if not r.problem and not r.killed_by]
    summary = f"{len(ordered)} mutants, {killed} killed, {len(survived)} survived"
    if refused:
        summary += f", {len(refused)} refused (snippet not found exactly once or tests missing)"
    print(f"\n{summary} in {time.monotonic() - start:.0f} s")
    if survived:
        print(f"survived: {', '.join(survived)}")
    return 1 if survived or refused else 0


if __name__ == "__main__":
    sys.exit(main())
