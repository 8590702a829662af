"""lib/targets.py against hand-worked cases of docs/training.md §3 (anchor_target_layer.py)."""
import math

import numpy as np
import pytest
import torch

from lib.anchors import module_anchors
from lib.bbox import box_iou
from lib.targets import anchor_targets, max_overlaps

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
OFFICIAL = dict(positive_overlap=0.5, negative_overlap=0.3, batch_size=256, fg_fraction=0.25)


def k(y, x, a, width, num_anchors=2):
    """Flat (y, x, a) index."""
    return (y * width + x) * num_anchors + a


def random_gt(n, lo, hi, height, width, gen):
    wh = torch.rand(n, 1, generator=gen) * (hi - lo) + lo
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh - 1], dim=1)


@pytest.mark.parametrize("max_pairs", [1 << 19, 3000])
def test_max_overlaps_equals_dense_iou(max_pairs):
    gen = torch.Generator().manual_seed(0)
    for module, h, w in [("m1", 20, 30), ("m2", 10, 15), ("m3", 5, 8)]:
        anchors = module_anchors(module, h, w)
        gt = random_gt(100, 4, 60, h * 8, w * 8, gen)
        best, arg = max_overlaps(anchors, gt, max_pairs=max_pairs)
        dense = box_iou(anchors.double(), gt.double())
        ref_best, ref_arg = dense.max(dim=1)
        assert torch.equal(best, ref_best)
        # numpy argmax: first gt among equal maxima; gt 0 for anchors overlapping nothing.
        assert torch.equal(arg, torch.where(ref_best > 0, ref_arg, 0))


@pytest.mark.parametrize("tile", [1, 8])
def test_max_overlaps_first_gt_wins_ties_and_touching_boxes_overlap(tile):
    anchors = torch.tensor([[0.0, 0, 15, 15], [100, 100, 115, 115], [200, 200, 215, 215], [300, 300, 315, 315]])
    gt = torch.tensor([[100.0, 100, 115, 115], [0, 0, 15, 15], [0, 0, 15, 15], [215.5, 200, 230, 215],
                       [284.5, 300, 299.5, 315]])
    best, arg = max_overlaps(anchors, gt, tile=tile)
    assert arg.tolist() == [1, 0, 3, 4]
    # +1 rule: x in [215.5, 215] or [300, 299.5] still intersects 0.5 px wide.
    assert best.tolist() == [1.0, 1.0, 8 / (256 + 15.5 * 16 - 8), 8 / (256 + 256 - 8)]


def test_no_gt_gives_zero_overlaps():
    best, arg = max_overlaps(module_anchors("m1", 3, 3), torch.zeros((0, 4)))
    assert best.abs().sum() == 0 and arg.abs().sum() == 0 and best.shape == (18,)


@pytest.mark.parametrize("device", DEVICES)
def test_gt_partly_outside_image_inside_test_and_targets(device):
    # M1 on a 32 x 32 blob: 4 x 4 cells; a=0 anchors (8x, 8y, 8x+15, 8y+15), a=1 (8x-8, 8y-8, 8x+23, 8y+23).
    anchors = module_anchors("m1", 4, 4, device)
    gt = torch.tensor([[-4.0, 0, 11, 15]], device=device)
    t = anchor_targets(anchors, gt, (32, 32), 0, **OFFICIAL)
    # Inside with border 0: a=0 at x, y <= 2 (9 anchors), a=1 only at (1, 1).
    inside = [k(y, x, 0, 4) for y in range(3) for x in range(3)] + [k(1, 1, 1, 4)]
    expect = torch.full((32,), -1)
    expect[inside] = 0
    expect[k(0, 0, 0, 4)] = 1  # IoU 12*16 / (256 + 256 - 192) = 0.6
    assert t.labels.cpu().tolist() == expect.tolist()
    assert t.labels.dtype == torch.int64
    # Positive: anchor centre (8, 8), gt centre (4, 8), both 16 x 16.
    assert t.bbox_targets[k(0, 0, 0, 4)].tolist() == [-0.25, 0, 0, 0]
    # Every inside anchor gets targets: (8, 0, 23, 15) has IoU 1/7 and dx = (4 - 16) / 16.
    assert t.bbox_targets[k(0, 1, 0, 4)].tolist() == [-0.75, 0, 0, 0]
    # (-8, -8, 23, 23) overlaps the gt (IoU 0.25) but is outside: no label, no targets.
    outside = torch.ones(32, dtype=torch.bool)
    outside[inside] = False
    assert t.bbox_targets[outside.to(device)].abs().sum() == 0
    iw = torch.zeros(32, 4)
    iw[k(0, 0, 0, 4)] = 1
    assert torch.equal(t.inside_weights.cpu(), iw)
    ow = torch.zeros(32, 4)
    ow[inside] = 1 / 10
    assert torch.allclose(t.outside_weights.cpu(), ow, rtol=0, atol=1e-9)
    # x2 < W is strict: on a 31 x 31 blob (16, 16, 31, 31) and (0, 0, 31, 31) are outside; 4 remain.
    assert (anchor_targets(anchors, gt, (31, 31), 0, **OFFICIAL).labels >= 0).sum() == 4
    # Border 8 admits (-8, -8, 23, 23): IoU 0.25 -> negative, targets to the gt 32 -> 16 px box.
    t8 = anchor_targets(anchors, gt, (32, 32), 8, **OFFICIAL)
    assert t8.labels[k(0, 0, 1, 4)] == 0
    assert torch.allclose(t8.bbox_targets[k(0, 0, 1, 4)].cpu(),
                          torch.tensor([-0.125, 0, math.log(0.5), math.log(0.5)]))


def test_ignored_band_and_no_forced_best_anchor():
    # (0, 0, 15, 15) vs a 12 x 12 face at (2, 2): IoU 144 / 256 = 0.5625 -> positive; vs an 11 x 11
    # face: 121 / 256 = 0.47 -> ignored (-1), and NOT forced positive (no best-anchor rule).
    anchors = module_anchors("m1", 4, 4)
    for side, label in [(12, 1), (11, -1)]:
        gt = torch.tensor([[2.0, 2, 2 + side - 1, 2 + side - 1]])
        t = anchor_targets(anchors, gt, (32, 32), 0, **OFFICIAL)
        assert t.labels[k(0, 0, 0, 4)] == label
        assert (t.labels == 1).sum() == (label == 1)
    # Positives override negatives when the thresholds overlap: IoU 0.47 >= 0.4 wins over < 0.6.
    # With a batch of 4 (1 positive, 3 negatives), the positive takes no negative slot even at the top prob.
    prob = torch.zeros(32)
    prob[k(0, 0, 0, 4)] = 1
    overlapping = {**OFFICIAL, "positive_overlap": 0.4, "negative_overlap": 0.6, "batch_size": 4}
    t = anchor_targets(anchors, gt, (32, 32), 0, prob, **overlapping)
    assert t.labels[k(0, 0, 0, 4)] == 1 and (t.labels == 0).sum() == 3


def test_iou_exactly_at_the_thresholds():
    """IoU exactly 0.5 is positive (>= 0.5) and exactly 0.3 is ignored, not negative (< 0.3 only)."""
    anchors = module_anchors("m1", 4, 4)  # k(0, 0, 0) is (0, 0, 15, 15), 256 px
    half = torch.tensor([[0.0, 0, 15, 7]])  # inside it, 128 px: IoU 128 / 256
    # 10 x 16 px at x = 10..19 overlaps 6 columns: IoU 96 / (256 + 160 - 96) = 96 / 320
    three_tenths = torch.tensor([[10.0, 0, 19, 15]])
    for gt, iou, label in [(half, 0.5, 1), (three_tenths, 0.3, -1)]:
        best, _ = max_overlaps(anchors, gt)
        assert best[k(0, 0, 0, 4)].item() == iou  # the float64 division rounds to the threshold literal
        t = anchor_targets(anchors, gt, (32, 32), 0, **OFFICIAL)
        assert t.labels[k(0, 0, 0, 4)].item() == label
    # Just below 0.3: the same box one column further right, 80 / 336.
    t = anchor_targets(anchors, torch.tensor([[11.0, 0, 20, 15]]), (32, 32), 0, **OFFICIAL)
    assert t.labels[k(0, 0, 0, 4)].item() == 0


def crowd(device):
    """M1 on a 320 x 320 blob, gt = the a=0 anchors of the 400 even cells (IoU 1 each)."""
    anchors = module_anchors("m1", 40, 40, device)
    cells = [k(y, x, 0, 40) for y in range(0, 40, 2) for x in range(0, 40, 2)]
    gen = torch.Generator().manual_seed(1)
    prob = (torch.randperm(anchors.shape[0], generator=gen).float() / anchors.shape[0]).to(device)
    return anchors, anchors[cells].clone(), torch.tensor(cells, device=device), prob


@pytest.mark.parametrize("device", DEVICES)
def test_ohem_keeps_lowest_prob_positives_and_highest_prob_negatives(device):
    anchors, gt, cells, prob = crowd(device)
    t = anchor_targets(anchors, gt, (320, 320), 0, prob, **OFFICIAL)
    pos = torch.nonzero(t.labels == 1).flatten()
    assert set(pos.tolist()) == set(cells[prob[cells].argsort()[:64]].tolist())
    # Candidate negatives from the dense reference IoU, restricted to inside anchors.
    inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < 320) & (anchors[:, 3] < 320)
    cand = torch.nonzero(inside & (box_iou(anchors, gt).max(dim=1).values < 0.3)).flatten()
    top = cand[prob[cand].argsort(descending=True)[:192]]
    assert set(torch.nonzero(t.labels == 0).flatten().tolist()) == set(top.tolist())
    assert torch.allclose(t.outside_weights[t.labels >= 0], torch.full((256, 4), 1 / 256, device=device))
    assert t.inside_weights.sum() == 64 * 4 and t.inside_weights[pos].sum() == 64 * 4


def test_random_positives_and_random_fallback():
    anchors, gt, cells, prob = crowd("cpu")
    lowest = set(cells[prob[cells].argsort()[:64]].tolist())
    t = anchor_targets(anchors, gt, (320, 320), 0, prob, hard_positive_mining=False,
                       generator=torch.Generator().manual_seed(0), **OFFICIAL)
    pos = set(torch.nonzero(t.labels == 1).flatten().tolist())
    assert len(pos) == 64 and pos <= set(cells.tolist()) and pos != lowest
    # Negatives are still mined by probability: the same ones as with hard positive mining.
    hard = anchor_targets(anchors, gt, (320, 320), 0, prob, **OFFICIAL)
    assert torch.equal(t.labels == 0, hard.labels == 0)
    runs = [anchor_targets(anchors, gt, (320, 320), 0, generator=torch.Generator().manual_seed(s), **OFFICIAL)
            for s in (5, 5, 6)]
    assert torch.equal(runs[0].labels, runs[1].labels) and not torch.equal(runs[0].labels, runs[2].labels)
    assert (runs[0].labels == 1).sum() == 64 and (runs[0].labels == 0).sum() == 192
    # Random negatives are spread over probabilities, unlike mined ones.
    assert prob[runs[0].labels == 0].min() < 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_image_without_faces(device):
    anchors = module_anchors("m2", 10, 12, device)
    prob = torch.linspace(0, 1, anchors.shape[0], device=device)
    t = anchor_targets(anchors, torch.zeros((0, 4), device=device), (160, 192), 0, prob, **OFFICIAL)
    # Inside: a=0 at x in 2..9, y in 2..7 (48), a=1 at x in 4..7, y in 4..5 (8): all negative, no mining.
    assert (t.labels == 0).sum() == 56 and (t.labels == 1).sum() == 0
    assert t.bbox_targets.abs().sum() == 0 and t.inside_weights.abs().sum() == 0
    assert torch.allclose(t.outside_weights.sum(dim=0), torch.ones(4, device=device))
    # With a small batch the highest-probability (last) inside anchors are kept.
    t = anchor_targets(anchors, torch.zeros((0, 4), device=device), (160, 192), 0, prob,
                       **{**OFFICIAL, "batch_size": 8})
    kept = torch.nonzero(t.labels == 0).flatten().tolist()
    assert kept == [k(7, x, 0, 12) for x in range(2, 10)]
    assert torch.allclose(t.outside_weights[kept], torch.full((8, 4), 1 / 8, device=device))


def test_m3_allowed_border_512_and_no_anchor_inside_fallback():
    none = torch.zeros((0, 4))
    big = {**OFFICIAL, "batch_size": 10 ** 6}
    anchors = module_anchors("m3", 38, 50)  # 1200 x 1600 blob
    # Border 512 keeps every M3 anchor; border 0 keeps a=0 at x 4..45, y 4..33 and a=1 at x 8..41, y 8..29.
    assert (anchor_targets(anchors, none, (1200, 1600), 512, **big).labels == 0).sum() == 3800
    assert (anchor_targets(anchors, none, (1200, 1600), 0, **big).labels == 0).sum() == 42 * 30 + 34 * 22
    # A 64 x 64 blob with border 0: no M3 anchor is inside, so all 8 count as inside.
    small = module_anchors("m3", 2, 2)
    t = anchor_targets(small, torch.tensor([[0.0, 0, 63, 63]]), (64, 64), 0, **big)
    assert (t.labels == 0).sum() == 8
    # (-120, -120, 135, 135) vs (0, 0, 63, 63): dx = (32 - 8) / 256, dw = log(64 / 256).
    assert torch.allclose(t.bbox_targets[0], torch.tensor([24 / 256, 24 / 256, math.log(0.25), math.log(0.25)]))


def test_targets_carry_no_grad():
    gt = torch.tensor([[-4.0, 0, 11, 15]], requires_grad=True)
    prob = torch.rand(32, requires_grad=True)
    t = anchor_targets(module_anchors("m1", 4, 4), gt, (32, 32), 0, prob, **OFFICIAL)
    assert not any(x.requires_grad for x in t)


def official_layer(anchors, gt, im_hw, border, prob, pos_thr=0.5, neg_thr=0.3, batch=256, fg=0.25):
    """The official forward with OHEM, restated step by step in numpy float64 (distinct probs: no ties)."""
    inds = np.where((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
                    & (anchors[:, 2] < im_hw[1] + border) & (anchors[:, 3] < im_hw[0] + border))[0]
    if inds.size == 0:
        inds = np.arange(len(anchors))
    a = anchors[inds]
    iw = np.minimum(a[:, None, 2], gt[None, :, 2]) - np.maximum(a[:, None, 0], gt[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], gt[None, :, 3]) - np.maximum(a[:, None, 1], gt[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    overlaps = inter / (area_a[:, None] + area_g[None, :] - inter)
    argmax = overlaps.argmax(axis=1)
    best = overlaps[np.arange(len(inds)), argmax]
    labels = np.full(len(inds), -1.0)
    labels[best < neg_thr] = 0
    labels[best >= pos_thr] = 1
    p = prob[inds].astype(np.float32)
    fg_inds = np.where(labels == 1)[0]
    if len(fg_inds) > int(fg * batch):
        order = (1 - p[fg_inds]).argsort()[::-1]
        labels[fg_inds] = -1
        labels[fg_inds[order[:int(fg * batch)]]] = 1
    num_bg = batch - np.sum(labels == 1)
    bg_inds = np.where(labels == 0)[0]
    if len(bg_inds) > num_bg:
        order = p[bg_inds].argsort()[::-1]
        labels[bg_inds] = -1
        labels[bg_inds[order[:num_bg]]] = 0
    g = gt[argmax]
    ew, eh = a[:, 2] - a[:, 0] + 1, a[:, 3] - a[:, 1] + 1
    gw, gh = g[:, 2] - g[:, 0] + 1, g[:, 3] - g[:, 1] + 1
    targets = np.stack([(g[:, 0] + 0.5 * gw - a[:, 0] - 0.5 * ew) / ew, (g[:, 1] + 0.5 * gh - a[:, 1] - 0.5 * eh) / eh,
                        np.log(gw / ew), np.log(gh / eh)], axis=1).astype(np.float32)
    out_labels = np.full(len(anchors), -1.0)
    out_labels[inds] = labels
    out_targets = np.zeros((len(anchors), 4), np.float32)
    out_targets[inds] = targets
    return out_labels, out_targets, 1.0 / np.sum(labels >= 0)


@pytest.mark.parametrize("module,hw,border", [("m1", (30, 40), 0), ("m2", (15, 20), 0), ("m3", (8, 10), 512)])
def test_matches_official_layer_restated_in_numpy(module, hw, border):
    gen = torch.Generator().manual_seed(2)
    anchors = module_anchors(module, *hw)
    im_hw = (hw[0] * {"m1": 8, "m2": 16, "m3": 32}[module] - 5, hw[1] * {"m1": 8, "m2": 16, "m3": 32}[module] - 3)
    gt = torch.cat([random_gt(150, 8, 40, *im_hw, gen), random_gt(20, 40, 250, *im_hw, gen)])
    prob = torch.randperm(anchors.shape[0], generator=gen).float() / anchors.shape[0]
    t = anchor_targets(anchors, gt, im_hw, border, prob, **OFFICIAL)
    labels, targets, weight = official_layer(anchors.double().numpy(), gt.double().numpy(), im_hw, border,
                                             prob.numpy())
    assert (labels == 1).sum() > 0 and (labels == 0).sum() > 0
    assert np.array_equal(t.labels.numpy(), labels)
    assert np.array_equal(t.bbox_targets.numpy(), targets)
    assert np.array_equal(t.inside_weights.numpy(), np.repeat((labels == 1)[:, None], 4, 1).astype(np.float32))
    assert np.allclose(t.outside_weights.numpy(), np.repeat((labels >= 0)[:, None], 4, 1) * weight, rtol=1e-6, atol=0)
