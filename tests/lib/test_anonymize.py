"""lib/anonymize.py: masks change exactly the pixels inside the scaled boxes (or their ellipses), each
method replaces them as documented, and MaskHold keeps a missed face masked for `hold` frames."""
import numpy as np
import pytest

from lib.anonymize import METHODS, SHAPES, MaskHold, anonymize, mask_boxes

# Three faces in a 120 x 160 image: B overlaps A, C sticks out of the top-right corner once scaled.
BOXES = np.array([[20, 30, 59, 79, 0.9],
                  [50, 50, 89, 99, 0.8],
                  [130, 0, 159, 35, 0.7]], np.float32)
# Their masks at scale 1.3, worked out by hand: centre x1 + w/2 (w = x2 - x1 + 1), half side 1.3 w/2,
# pixels floor(cx - half) .. floor(cx + half - 1), exclusive end + 1, clipped to 160 x 120.
# A: w 40, cx 40, half 26 -> 14..65; h 50, cy 55, half 32.5 -> 22..86.
# B: cx 70 -> 44..95; cy 75 -> 42..106.   C: w 30, cx 145, half 19.5 -> 125..163 -> ..159;
# h 36, cy 18, half 23.4 -> -6..40 -> 0..40.
RECTS = np.array([[14, 22, 66, 87], [44, 42, 96, 107], [125, 0, 160, 41]])
# Ellipses are inscribed in the masks before clipping, so a face at the edge keeps its whole ellipse.
UNCLIPPED = np.array([[14, 22, 66, 87], [44, 42, 96, 107], [125, -6, 164, 41]])


def noise(seed=0, shape=(120, 160, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def union(rects, shape=(120, 160)):
    inside = np.zeros(shape, bool)
    for x1, y1, x2, y2 in rects:
        inside[y1:y2, x1:x2] = True
    return inside


def ellipse_radius(rect, shape=(120, 160)):
    """Normalised radius of every pixel centre w.r.t. the ellipse inscribed in `rect` (1 on it)."""
    x1, y1, x2, y2 = rect
    ys, xs = np.mgrid[:shape[0], :shape[1]] + 0.5
    return np.hypot((xs - (x1 + x2) / 2) / ((x2 - x1) / 2), (ys - (y1 + y2) / 2) / ((y2 - y1) / 2))


def test_mask_boxes_by_hand():
    assert mask_boxes(BOXES, 1.3, (120, 160)).tolist() == RECTS.tolist()
    # Scale 1 is exactly the inclusive pixels int(x1)..int(x2); 4 columns work as 5 do.
    assert mask_boxes(np.array([[10.6, 20.2, 29.4, 59.9]]), 1.0, (120, 160)).tolist() == [[10, 20, 30, 60]]
    # Scale 2 about the centre, clipped at the left; a box outside the image is dropped.
    boxes = np.array([[4, 10, 13, 19], [200, 10, 220, 30]], np.float32)
    assert mask_boxes(boxes, 2.0, (120, 160)).tolist() == [[0, 5, 19, 25]]
    assert mask_boxes(np.zeros((0, 5)), 1.3, (120, 160)).shape == (0, 4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", METHODS)
def test_only_mask_pixels_change(method, shape):
    """Outside all masks: bit-identical; inside: (nearly) every noise pixel replaced; input kept."""
    image = noise()
    before = image.copy()
    out = anonymize(image, BOXES, method, scale=1.3, shape=shape)
    assert np.array_equal(image, before) and out is not image
    inside = union(RECTS)
    assert np.array_equal(out[~inside], image[~inside])
    if shape == "ellipse":
        core = np.zeros(inside.shape, bool)
        for rect in UNCLIPPED:
            core |= ellipse_radius(rect) <= 0.9
        corners = inside & np.all([ellipse_radius(r) >= 1.1 for r in UNCLIPPED], axis=0)
        assert corners.sum() > 300
        assert np.array_equal(out[corners], image[corners]), "ellipse masks leave the box corners alone"
        inside = core
    changed = (out[inside] != image[inside]).mean()
    assert changed > 0.95, f"{method}: only {changed:.1%} of the masked pixel values changed"
    if method == "solid":
        assert not out[union(RECTS) if shape == "box" else inside].any()


def test_blur_is_strong_and_scales_with_the_mask():
    """Noise under the blur loses nearly all its contrast, for a small and a large face alike."""
    image = noise(1, (400, 400, 3))
    for box in ([100, 100, 119, 119], [100, 100, 299, 299]):
        out = anonymize(image, np.array([box]), "blur", scale=1.0, shape="box")
        x1, y1, x2, y2 = box
        region = out[y1:y2 + 1, x1:x2 + 1].astype(float)
        assert region.std() < 0.1 * image.std(), box


def test_pixelate_gives_constant_blocks_of_the_mean():
    """A 40 x 50 mask gets 5 px blocks (8 across its shorter side), each its pixels' mean."""
    image = noise(2)
    out = anonymize(image, np.array([[20, 30, 59, 79]]), "pixelate", scale=1.0, shape="box")
    region, source = out[30:80, 20:60].astype(int), image[30:80, 20:60].astype(int)
    blocks = region[::5, ::5]
    assert np.array_equal(blocks.repeat(5, 0).repeat(5, 1), region)
    means = source.reshape(10, 5, 8, 5, 3).mean(axis=(1, 3))
    assert np.abs(blocks - means).max() <= 1
    assert len(np.unique(blocks.reshape(-1, 3), axis=0)) > 70


def test_empty_boxes_give_an_identical_copy():
    image = noise(3)
    for boxes in (np.zeros((0, 5)), np.zeros((0, 4)), []):
        out = anonymize(image, boxes)
        assert out is not image and np.array_equal(out, image)


@pytest.mark.parametrize("kwargs, word", [({"method": "smudge"}, "smudge"), ({"shape": "circle"}, "circle"),
                                          ({"scale": 0}, "0"), ({"scale": -1.3}, "-1.3"),
                                          ({"scale": float("nan")}, "nan")])
def test_bad_arguments_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        anonymize(noise(), BOXES, **kwargs)


FACE = np.array([[10, 10, 49, 49, 0.9]], np.float32)
NONE = np.zeros((0, 5), np.float32)


def run(hold, frames):
    """{frame: boxes masked} for a face seen in `frames` of 0..8 (hold of `hold` frames)."""
    masks = MaskHold(hold)
    return {f: masks.update(FACE if f in frames else NONE, f) for f in range(9)}


def test_hold_masks_a_missed_face_for_hold_frames():
    seen = {0, 1, 2, 3, 6}
    held = run(2, seen)
    assert all(len(held[f]) == 1 for f in range(7))
    assert np.array_equal(held[4], FACE) and np.array_equal(held[5], FACE)
    assert len(held[7]) == 1 and len(held[8]) == 1 and len(run(2, seen - {6})[6]) == 0
    assert all(len(run(0, seen)[f]) == 0 for f in (4, 5))
    one = run(1, seen)
    assert len(one[4]) == 1 and len(one[5]) == 0, "dropped after `hold` frames"


def test_a_moved_face_replaces_its_memory():
    masks = MaskHold(3)
    masks.update(FACE, 0)
    moved = FACE + [6, 4, 6, 4, 0]  # IoU with FACE = 34 * 36 / (2 * 1600 - 34 * 36) = 0.62
    other = np.array([[100, 100, 139, 139, 0.8]], np.float32)
    now = masks.update(np.concatenate([moved, other]), 1)
    assert np.array_equal(now, np.concatenate([moved, other])), "no double mask of the same face"
    assert np.array_equal(masks.update(NONE, 2), np.concatenate([moved, other]))
    far = FACE + [25, 25, 25, 25, 0]  # IoU = 15 * 15 / (3200 - 225) = 0.08: another face
    assert np.array_equal(masks.update(far, 3), np.concatenate([far, moved, other]))


def test_hold_counts_frames_across_gaps():
    """Detection on every 10th frame: the frame index, not the number of calls, gives the age."""
    for hold, expected in ((10, 1), (9, 0)):
        masks = MaskHold(hold)
        masks.update(FACE, 0)
        assert len(masks.update(NONE, 10)) == expected
    masks = MaskHold(10)
    masks.update(FACE, 0)
    masks.update(NONE, 10)
    assert len(masks.update(NONE, 11)) == 0


def test_hold_refuses_bad_values():
    with pytest.raises(ValueError, match="-1"):
        MaskHold(-1)
    masks = MaskHold()
    masks.update(FACE, 5)
    with pytest.raises(ValueError, match="frame 5 after frame 5"):
        masks.update(FACE, 5)
