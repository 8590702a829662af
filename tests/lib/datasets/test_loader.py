"""Training images (pixel pipeline, scale, flip), epoch sampler and DataLoader (docs/training.md §4.3)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.datasets.loader import EpochSampler, TrainDataset, make_loader, raise_item_errors
from lib.datasets.roidb import RoidbEntry, append_flipped, training_roidb
from lib.image_io import ImageError
from shared import DATA, needs_shared

MINI = DATA / "mini_wider"
MEANS = [[[102.9801, 115.9465, 122.7717]]]


def entry(tmp_path, image, boxes, name="im.png"):
    path = tmp_path / name
    cv2.imwrite(str(path), image)
    return RoidbEntry(str(path), image.shape[1], image.shape[0], np.asarray(boxes, np.float32).reshape(-1, 4))


def test_constant_image_blob_values_and_scale(tmp_path):
    image = np.empty((30, 40, 3), np.uint8)
    image[:] = (110, 120, 130)
    ds = TrainDataset([entry(tmp_path, image, [[5, 3, 14, 9]])], 60, 100, MEANS)
    item = ds[0]
    assert item["index"] == 0
    assert item["data"].dtype == torch.float32 and item["data"].shape == (3, 60, 80)
    for c, v in enumerate([110 - 102.9801, 120 - 115.9465, 130 - 122.7717]):
        torch.testing.assert_close(item["data"][c], torch.full((60, 80), v), rtol=0, atol=1e-4)
    torch.testing.assert_close(item["im_info"], torch.tensor([60.0, 80.0, 2.0]))
    torch.testing.assert_close(item["gt_boxes"], torch.tensor([[10.0, 6.0, 28.0, 18.0]]))


def test_max_size_bound_and_orig_size(tmp_path):
    e = entry(tmp_path, np.zeros((20, 100, 3), np.uint8), [[1, 2, 3, 4]])
    # s = 60 / 20 = 3 would make the long side 300 > 200, so s = 200 / 100 = 2.
    item = TrainDataset([e], 60, 200, MEANS)[0]
    assert item["data"].shape == (3, 40, 200)
    torch.testing.assert_close(item["im_info"], torch.tensor([40.0, 200.0, 2.0]))
    torch.testing.assert_close(item["gt_boxes"], torch.tensor([[2.0, 4.0, 6.0, 8.0]]))
    item = TrainDataset([e], 60, 200, MEANS, orig_size=True)[0]
    assert item["data"].shape == (3, 20, 100)
    torch.testing.assert_close(item["im_info"], torch.tensor([20.0, 100.0, 1.0]))
    # orig_size keeps the official MAX_SIZE bound: s = 50 / 100.
    item = TrainDataset([e], 60, 50, MEANS, orig_size=True)[0]
    assert item["data"].shape == (3, 10, 50)


def test_gt_boxes_are_scaled_in_float64_then_rounded_to_float32(tmp_path):
    # With s = 300 / 754, 3 * s and 17 * s round differently in float32 arithmetic.
    e = entry(tmp_path, np.zeros((754, 1024, 3), np.uint8), [[3, 6, 17, 226]])
    item = TrainDataset([e], 300, 500, MEANS)[0]
    s = 300 / 754
    expected = torch.tensor(np.array([[3, 6, 17, 226]], np.float64) * s, dtype=torch.float32)
    assert torch.equal(item["gt_boxes"], expected)
    assert not torch.equal(item["gt_boxes"], torch.tensor([[3.0, 6.0, 17.0, 226.0]]) * np.float32(s))
    assert item["data"].shape == (3, 300, 407)


def test_flipped_box_covers_the_flipped_pixels(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    image[3:10, 5:15] = 255  # pixels of the inclusive box [5, 3, 14, 9]
    e = entry(tmp_path, image, [[5, 3, 14, 9]])
    original, flipped = (TrainDataset(append_flipped([e]), 60, 100, MEANS)[i] for i in (0, 1))
    torch.testing.assert_close(flipped["data"], original["data"].flip(-1), rtol=0, atol=1e-3)
    # Flipped box [40 - 14 - 1, 3, 40 - 5 - 1, 9] = [25, 3, 34, 9], times s = 2.
    torch.testing.assert_close(flipped["gt_boxes"], torch.tensor([[50.0, 6.0, 68.0, 18.0]]))
    # 2x bilinear: source pixels 25..34 cover blob columns 50..69 (= x2 * s + s - 1), rows 6..19.
    bright = flipped["data"][0] > 255 / 2 - 102.9801  # blue channel above mid-grey
    rows, cols = torch.nonzero(bright, as_tuple=True)
    assert (cols.min().item(), cols.max().item(), rows.min().item(), rows.max().item()) == (50, 69, 6, 19)


def test_exif_rotated_training_image_is_upright_with_its_roidb_size(tmp_path):
    """A JPEG stored 80 wide x 64 high with EXIF orientation 6 trains as the upright 64 x 80 image,
    as cv2.imread gives it; the roidb's header size agrees (no size mismatch)."""
    from PIL import Image

    root = tmp_path / "wider"
    images = root / "WIDER_train" / "images" / "0--Test"
    images.mkdir(parents=True)
    (root / "wider_face_split").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(stored).save(images / "phone.jpg", exif=exif.tobytes(), quality=95)
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text("0--Test/phone.jpg\n1\n4 6 20 30 0 0 0 0 0 0 \n")
    roidb = training_roidb(root, "train", use_flipped=False)
    assert (roidb[0].width, roidb[0].height) == (64, 80)
    item = TrainDataset(roidb, 64, 1000, MEANS)[0]  # scale 1: the blob is the image minus the means
    assert "error" not in item and tuple(item["data"].shape) == (3, 80, 64)
    upright = cv2.imread(str(images / "phone.jpg")).astype(np.float32) - np.float32(MEANS).reshape(1, 1, 3)
    np.testing.assert_allclose(item["data"].permute(1, 2, 0).numpy(), upright, rtol=0, atol=1e-4)


def test_unreadable_images_become_error_items_named_by_their_path(tmp_path):
    """Workers hand an error back as an item; raise_item_errors raises it as ImageError in the trainer."""
    missing = RoidbEntry(str(tmp_path / "gone.jpg"), 10, 10, np.zeros((1, 4), np.float32))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    wrong = entry(tmp_path, np.zeros((10, 20, 3), np.uint8), [[0, 0, 1, 1]])
    wrong = RoidbEntry(wrong.image, 21, 10, wrong.boxes)
    good = entry(tmp_path, np.zeros((10, 20, 3), np.uint8), [[0, 0, 1, 1]], "good.png")
    ds = TrainDataset([missing, RoidbEntry(str(junk), 10, 10, np.zeros((1, 4), np.float32)), wrong, good],
                      60, 100, MEANS)
    assert ds[0] == {"error": f"image not found: {tmp_path / 'gone.jpg'}", "index": 0}
    assert ds[1]["index"] == 1 and ds[1]["error"].startswith(f"{junk}: not an image")
    assert ds[2] == {"error": f"{wrong.image}: image is 20x10, the roidb says 21x10", "index": 2}
    assert "error" not in ds[3]
    items = raise_item_errors(iter([ds[3], ds[1], ds[3]]))
    assert next(items)["index"] == 3
    with pytest.raises(ImageError, match="junk.jpg: not an image"):
        next(items)


def test_a_worker_error_reaches_the_trainer_as_one_line(tmp_path):
    """No DataLoader re-raise with the worker's traceback text: the message is the ImageError's own."""
    good = entry(tmp_path, np.zeros((10, 20, 3), np.uint8), [[0, 0, 1, 1]])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    ds = TrainDataset([good, RoidbEntry(str(bad), 20, 10, good.boxes)], 20, 40, MEANS)
    items = raise_item_errors(iter(make_loader(ds, [0, 1], workers=1, pin_memory=False)))
    assert next(items)["index"] == 0
    with pytest.raises(ImageError) as raised:
        next(items)
    assert str(raised.value) == f"{bad}: empty file (0 bytes)"


@needs_shared(MINI)
def test_mini_wider_blobs_and_flipped_faces():
    roidb = training_roidb(MINI, "train")
    ds = TrainDataset(roidb, 300, 500, MEANS)
    names = [Path(e.image).name for e in roidb[:16]]
    expected = {  # (width, height) -> blob (H, W), s
        "1_Handshaking_Handshaking_1_71.jpg": ((300, 407), 300 / 754),
        "13_Interview_Interview_Sequences_13_818.jpg": ((221, 500), 500 / 1024),  # 1024x452: MAX_SIZE bound
        "13_Interview_Interview_Sequences_13_455.jpg": ((448, 300), 300 / 1024),
    }
    for name, (shape, s) in expected.items():
        item = ds[names.index(name)]
        assert tuple(item["data"].shape) == (3, *shape)
        torch.testing.assert_close(item["im_info"], torch.tensor([*shape, s], dtype=torch.float32))
    # 1024 * 300 / 1024 = 300 px exactly, so the flipped blob is the mirrored blob and each flipped
    # box holds the mirrored face: blob x' = W_blob - x - s for the +1 box corners.
    i = names.index("20_Family_Group_Family_Group_20_608.jpg")
    original, flipped = ds[i], ds[i + 16]
    torch.testing.assert_close(flipped["data"], original["data"].flip(-1), rtol=0, atol=1e-3)
    s = 300 / 1024
    torch.testing.assert_close(flipped["gt_boxes"][:, 0], 300 - original["gt_boxes"][:, 2] - s)
    torch.testing.assert_close(flipped["gt_boxes"][:, 2], 300 - original["gt_boxes"][:, 0] - s)
    for bo, bf in zip(original["gt_boxes"].tolist(), flipped["gt_boxes"].tolist()):
        y1, y2 = round(bo[1]), round(bo[3] + s)
        face = original["data"][:, y1:y2, round(bo[0]):round(bo[2] + s)]
        mirrored = flipped["data"][:, y1:y2, round(bf[0]):round(bf[2] + s)]
        torch.testing.assert_close(mirrored, face.flip(-1), rtol=0, atol=1e-3)
        unflipped = flipped["data"][:, y1:y2, round(bo[0]):round(bo[2] + s)]
        assert (unflipped - face.flip(-1)).abs().mean() > 10


def stream(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_epochs_are_seeded_permutations():
    a = stream(EpochSampler(7, seed=3), 21)
    assert a == stream(EpochSampler(7, seed=3), 21)
    epochs = [a[0:7], a[7:14], a[14:21]]
    assert all(sorted(e) == list(range(7)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    assert epochs[1] == stream(EpochSampler(7, seed=4), 7)  # epoch e uses seed + e
    assert a != stream(EpochSampler(7, seed=5), 21)


def test_sampler_shards_steps_disjointly():
    n, world = 11, 3  # 11 // 3 = 3 steps per epoch, 2 items dropped
    streams = [stream(EpochSampler(n, seed=0, rank=r, world_size=world), 6) for r in range(world)]
    for epoch in range(2):
        perm = EpochSampler(n, seed=0).permutation(epoch).tolist()
        steps = [[streams[r][3 * epoch + t] for r in range(world)] for t in range(3)]
        assert [x for step in steps for x in step] == perm[:9]
        assert len(set(perm[:9])) == 9


def test_sampler_resumes_exactly_from_consumed_count():
    reference = stream(EpochSampler(10, seed=1, rank=1, world_size=2), 30)
    for consumed in (0, 3, 5, 7, 12, 25):
        assert stream(EpochSampler(10, seed=1, rank=1, world_size=2, start=consumed), 5) == \
            reference[consumed:consumed + 5]


def test_sampler_rejects_bad_arguments():
    for kwargs in ({"rank": 2, "world_size": 2}, {"rank": -1}, {"start": -1}, {"world_size": 20}):
        with pytest.raises(ValueError):
            EpochSampler(10, seed=0, **kwargs)


def test_loader_with_two_workers_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    roidb = [entry(tmp_path, rng.integers(0, 256, (12 + i, 16, 3), dtype=np.uint8), [[1, 1, 5, 5]], f"{i}.png")
             for i in range(5)]
    ds = TrainDataset(roidb, 24, 40, MEANS)
    reference = stream(EpochSampler(5, seed=7), 12)
    loader = make_loader(ds, EpochSampler(5, seed=7), workers=2, pin_memory=False)
    assert loader.persistent_workers and loader.num_workers == 2 and loader.batch_size is None
    it = iter(loader)
    first = [next(it) for _ in range(7)]  # workers have prefetched beyond these
    assert [x["index"] for x in first] == reference[:7]
    assert torch.equal(first[3]["data"], ds[first[3]["index"]]["data"])
    del it, loader
    resumed = make_loader(ds, EpochSampler(5, seed=7, start=7), workers=2, pin_memory=False)
    it = iter(resumed)
    assert [next(it)["index"] for _ in range(5)] == reference[7:12]
