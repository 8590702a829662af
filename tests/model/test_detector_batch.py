"""Batched detection: images grouped by blob size, per-image results equal to one-at-a-time
detection, streaming in order, and test.py --dir --batch-size."""
import cv2
import numpy as np
import pytest
import torch

from lib.config import get_config
from model.detector import Detector, batched
from model.ssh import SSH
from test import main


class Recorder(torch.nn.Module):
    """`net` that records the shape of every batch it sees."""

    def __init__(self, net):
        super().__init__()
        self.net, self.shapes = net, []

    def forward(self, images):
        self.shapes.append(tuple(images.shape))
        return self.net(images)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SSH().eval()


def images(*sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


def assert_same_detections(batched_dets, single_dets):
    """Equal up to the float rounding of batched convolutions (boxes 1e-2 px, scores 1e-5)."""
    assert len(batched_dets) == len(single_dets)
    for out, ref in zip(batched_dets, single_dets):
        assert len(ref) > 10 and out.shape == ref.shape
        np.testing.assert_allclose(out[:, 4], ref[:, 4], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=0, atol=1e-2)


def test_batch_groups_by_blob_size_and_matches_single_detection(net, device):
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    recorder = Recorder(net)
    det = Detector.from_config(recorder, cfg, device=device)
    ims = images((64, 96), (97, 131), (64, 96), (64, 96))
    ims[2] = cv2.cvtColor(ims[2], cv2.COLOR_BGR2GRAY)  # grey images join the BGR ones
    out = det.detect(ims)
    assert recorder.shapes == [(3, 3, 64, 96), (1, 3, 97, 131)]  # one pass per blob size, no padding
    assert_same_detections(out, [det.detect(im) for im in ims])


def test_prepared_blobs_are_page_locked_on_cuda_and_batch_as_detect(net, device):
    """prepare() gives numpy blobs on the CPU and page-locked tensors on CUDA (asynchronous copies);
    either way detect_prepared on a batch is detect's batch, bit for bit (the same blobs stacked)."""
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    det = Detector.from_config(net, cfg, device=device)
    ims = images((64, 96), (64, 96), (97, 131), seed=1)
    prepared = [det.prepare(im) for im in ims]
    for [(scale, blob)] in prepared:
        assert scale == 1.0
        if device.type == "cuda":
            assert isinstance(blob, torch.Tensor) and blob.is_pinned()
        else:
            assert isinstance(blob, np.ndarray)
    for out, ref in zip(det.detect_prepared(prepared), det.detect(ims)):
        np.testing.assert_array_equal(out, ref)


def test_batched_heads_equal_single_heads_within_tolerance(net, device):
    """What batching changes is only the convolution kernels' rounding: heads agree to 1e-4 * max."""
    blobs = torch.randn(3, 3, 97, 131, generator=torch.Generator().manual_seed(0), device="cpu") * 60
    net = net.to(device)
    with torch.inference_mode():
        together = net(blobs.to(device))
        for k in range(3):
            alone = net(blobs[k:k + 1].to(device))
            for m in alone:
                for i in range(2):
                    ref = alone[m][i]
                    assert (together[m][i][k:k + 1] - ref).abs().max() <= 1e-4 * ref.abs().max()
    net.cpu()


def test_pyramid_batch_matches_single_detection(net):
    cfg = get_config()
    cfg.TEST.update(SCALES=[48, 64], MAX_SIZE=-1, PYRAMID_BASE_SIZE=[64, 96])
    recorder = Recorder(net)
    det = Detector.from_config(recorder, cfg)
    ims = images((64, 96), (64, 96), seed=1)
    out = det.detect(ims)
    assert recorder.shapes == [(2, 3, 48, 72), (2, 3, 64, 96)]  # each level batched across images
    assert_same_detections(out, [det.detect(im) for im in ims])


def test_single_image_returns_an_array(net):
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    det = Detector.from_config(net, cfg)
    (im,) = images((64, 96))
    one = det.detect(im)
    assert isinstance(one, np.ndarray) and one.shape[1] == 5
    np.testing.assert_array_equal(det.detect([im])[0], one)


def test_stream_keeps_order_and_batch_size(net):
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    recorder = Recorder(net)
    det = Detector.from_config(recorder, cfg)
    ims = images((64, 96), (64, 96), (64, 96), seed=2)
    pairs = list(det.detect_stream(iter(ims), batch_size=2))
    assert [p[0] is im for p, im in zip(pairs, ims)] == [True] * 3
    assert [s[0] for s in recorder.shapes] == [2, 1]
    assert_same_detections([d for _, d in pairs], [det.detect(im) for im in ims])


def test_batched_helper():
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(batched(range(3), 0))


def test_cli_dir_batch_size_gives_the_same_files(net, tmp_path):
    pth = tmp_path / "ssh.pth"
    torch.save(net.state_dict(), pth)
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, im in enumerate(images((64, 96), (64, 96), (97, 131), seed=3)):
        cv2.imwrite(str(photos / f"{k}.png"), im)
    common = ["--dir", str(photos), "--model", str(pth), "--thresh", "0.05", "--device", "cpu",
              "--set", "TEST.ORIG_SIZE", "True"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "three"), "--batch-size", "3"]) == 0
    for k in range(3):
        ref, out = (np.loadtxt(tmp_path / d / f"{k}_ssh.txt", ndmin=2) for d in ("one", "three"))
        assert len(ref) > 10 and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=0.11)  # 1-decimal boxes may round apart


def test_cli_rejects_a_zero_batch_size():
    with pytest.raises(SystemExit) as exit_info:
        main(["--batch-size", "0"])
    assert exit_info.value.code == 2
