"""int8 quantization (model.deploy.quantize, `python3 -m model.deploy`): a calibrated int8 graph
that runs any input size and stays within a stated error of fp32, reproducible files, the
precision checks, and clear exit-2 errors that leave nothing behind."""
import shlex
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lib.config import get_config  # noqa: E402
from lib.image_io import read_image  # noqa: E402
from lib.utils.integrity import check_record  # noqa: E402
from model.deploy.__main__ import main  # noqa: E402
from model.deploy.agreement import HEAD_NAMES, head_errors, matched_count  # noqa: E402
from lib.sources import image_tree  # noqa: E402
from model.deploy.calibration import (CalibrationBlobs, CalibrationError, CalibrationWarning,  # noqa: E402
                                      image_files, load_images)
from model.deploy.onnx_export import export_onnx  # noqa: E402
from model.deploy import onnx_runtime  # noqa: E402
from model.deploy.onnx_export import OUTPUT_NAMES  # noqa: E402
from model.deploy.onnx_runtime import OnnxSSH, load_session  # noqa: E402
from model.deploy.quantize import SOURCE_KEY, graph_metadata, quantize_network, source_entry  # noqa: E402
from model.detector import Detector  # noqa: E402

# Photos that matplotlib installs: calibration images of real content.
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
# int8 against fp32, relative L2 error of each head. An 8-bit activation tensor with range r carries
# rounding noise of std r / 255 / sqrt(12) ~ 1.1e-3 r, about 1% of a ReLU map's RMS; the deepest head
# passes ~20 such tensors, so sqrt(20) x 1% ~ 4.5% is expected. Measured on this random network:
# 2.7e-2 to 5.8e-2 at 197 x 291 and 600 x 512, up to 6.1e-2 at 33 x 47 (pooled maps of 1-2 pixels
# where rounding is not averaged out). The bound is 2x the largest; above 1e-3 proves int8 ran.
INT8_HEAD_ERROR = 0.12


def photos():
    return [read_image(cbook.get_sample_data(name, asfileobj=False)) for name in PHOTOS]


def small_config(scale=160, max_size=256):
    cfg = get_config()
    cfg.TEST.update(SCALES=[scale], MAX_SIZE=max_size)
    return cfg


@pytest.fixture(scope="module")
def quantized(random_checkpoint, tmp_path_factory):
    """(fp32 Detector of the seeded random SSH, the path of its int8 graph calibrated on PHOTOS)."""
    net, _ = random_checkpoint
    reference = Detector.from_config(net, small_config())
    path = quantize_network(net, tmp_path_factory.mktemp("int8") / "ssh_int8.onnx",
                            CalibrationBlobs(photos(), reference))
    return reference, path


def blob_of(image, means):
    return np.ascontiguousarray((image.astype(np.float32) - means).transpose(2, 0, 1)[None])


@pytest.mark.parametrize("crop", [(slice(0, 197), slice(0, 291)), (slice(100, 133), slice(200, 247))])
def test_int8_runs_odd_sizes_within_the_stated_error_of_fp32(quantized, crop):
    reference, path = quantized
    image = np.ascontiguousarray(photos()[0][crop])
    int8 = Detector.from_config(OnnxSSH.from_file(path), small_config(), "cpu", "int8")
    errors = head_errors(reference, int8, [blob_of(image, reference.pixel_means)])
    print(image.shape, errors)
    assert set(errors) == set(HEAD_NAMES)
    assert all(1e-3 < e < INT8_HEAD_ERROR for e in errors.values()), errors
    whole = get_config()
    whole.TEST.ORIG_SIZE = True  # blob = image, so boxes are clipped to the image itself
    dets = Detector.from_config(OnnxSSH.from_file(path), whole, "cpu", "int8").detect(image)
    assert dets.dtype == np.float32 and dets.shape[1] == 5 and len(dets) > 0
    height, width = image.shape[:2]
    assert (dets[:, :2] >= 0).all() and (dets[:, 2] <= width - 1).all() and (dets[:, 3] <= height - 1).all()


def test_quantizing_again_writes_the_same_bytes_and_the_file_reloads_bit_identically(quantized, random_checkpoint,
                                                                                      tmp_path):
    reference, path = quantized
    net, _ = random_checkpoint
    again = quantize_network(net, tmp_path / "again.onnx", CalibrationBlobs(photos(), reference))
    assert again.read_bytes() == path.read_bytes()
    blob = torch.from_numpy(blob_of(photos()[0][:97, :131], reference.pixel_means))
    first, second = OnnxSSH.from_file(path)(blob), OnnxSSH.from_file(again)(blob)
    for m in first:
        assert all(torch.equal(a, b) for a, b in zip(first[m], second[m]))
    assert [p.name for p in tmp_path.iterdir()] == ["again.onnx"]  # no temporary files left


def test_int8_strips_give_the_whole_graphs_heads_bit_for_bit(quantized, monkeypatch):
    """VGG's first stage over row strips (2-row halo, dropped after pooling) then the rest of the
    graph: the same integers as one run of the whole graph, at odd and even heights, batched; the
    whole-graph session is released when the strips take over."""
    _, path = quantized
    monkeypatch.setattr(onnx_runtime, "STRIP_ROWS", 16)
    monkeypatch.setattr(onnx_runtime, "STRIP_MIN_PIXELS", 0)
    net, whole = OnnxSSH.from_file(path), load_session(path)
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 97, 131), (2, 3, 64, 96), (1, 3, 35, 47)):
        images = rng.uniform(-120, 140, shape).astype(np.float32)
        heads = net(torch.from_numpy(images))
        expected = whole.run(list(OUTPUT_NAMES), {"images": images})
        assert net.session is None and net.strips is not None
        got = [t.numpy() for m in heads for t in heads[m]]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), shape


def test_graph_records_its_precision_and_each_precision_needs_its_model(quantized, random_checkpoint, tmp_path):
    reference, path = quantized
    net, _ = random_checkpoint
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["ssh.precision"] == "int8" and meta["ssh.calibration"] == "minmax, 3 blobs"
    int8 = OnnxSSH.from_file(path)
    assert int8.precision == "int8"
    with pytest.raises(ValueError, match="is an int8 graph: run it with --precision int8, not fp32"):
        Detector.from_config(int8, small_config())
    with pytest.raises(ValueError, match="int8 runs a quantized model: make one with `python3 -m model.deploy"):
        Detector.from_config(net, small_config(), precision="int8")
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        Detector.from_config(int8, small_config(), "cuda", "int8")
    float_graph = OnnxSSH.from_file(export_onnx(net, tmp_path / "fp32.onnx"))
    assert float_graph.precision == "fp32"
    with pytest.raises(ValueError, match="is an fp32 graph: run it with --precision fp32, not int8"):
        Detector.from_config(float_graph, small_config(), precision="int8")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        Detector.from_config(net, small_config(), precision="int4")


def test_keep_float_leaves_those_convolutions_unquantized(random_checkpoint, tmp_path):
    net, _ = random_checkpoint
    reference = Detector.from_config(net, small_config(64, 96))
    blobs = CalibrationBlobs(photos()[:1], reference)
    path = quantize_network(net, tmp_path / "keep.onnx", blobs, keep_float=("m1.cls_score", "vgg.conv1_1"))
    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    weights = {node.input[1]: node.input[1] in initializers for node in graph.node if node.op_type == "Conv"}
    float_weights = {name for name, is_float in weights.items() if is_float}
    assert float_weights == {"net.m1.cls_score.weight", "net.vgg.conv1_1.weight"}
    assert len(weights) == 37  # every other convolution reads a dequantized int8 weight
    with pytest.raises(ValueError, match="no convolution m4.cls_score in the SSH network"):
        quantize_network(net, tmp_path / "bad.onnx", blobs, keep_float=("m4.cls_score",))
    assert not (tmp_path / "bad.onnx").exists()


def test_calibration_images_spread_over_subfolders_and_blobs_follow_the_test_levels(tmp_path):
    for i in range(10):
        folder = tmp_path / ("a" if i < 5 else "b")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 60, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [int(image[0, 0, 0]) for image in load_images(tmp_path, 4)] == [0, 3, 6, 9]  # a/0, a/3, b/6, b/9
    assert len(load_images(tmp_path, 50)) == 10
    cfg = get_config()
    cfg.TEST.update(SCALES=[50, 100], PYRAMID_BASE_SIZE=[40, 60])  # two pyramid levels per image
    detector = Detector.from_config(torch.nn.Identity(), cfg)
    images = [np.full((40, 60, 3), 7, np.uint8), np.full((30, 90, 3), 9, np.uint8)]
    blobs = CalibrationBlobs(images, detector)
    assert len(blobs) == 4
    scales = [scale for image in images for scale, _ in detector.scales(*image.shape[:2])]
    for blob, (i, scale) in zip(blobs, blobs.items):
        assert scale in scales
        expected = cv2.resize(images[i].astype(np.float32) - detector.pixel_means, None, fx=scale, fy=scale,
                              interpolation=cv2.INTER_LINEAR)
        assert blob.shape == (1, 3, *expected.shape[:2]) and blob.dtype == np.float32
        np.testing.assert_allclose(blob[0].transpose(1, 2, 0), expected, atol=1e-4)


def test_matched_count_is_one_to_one_at_the_thresholds():
    reference = np.array([[0, 0, 9, 9, 0.9], [20, 20, 29, 29, 0.8], [40, 40, 49, 49, 0.4]], np.float32)
    other = np.array([[0, 0, 9, 9, 0.95],  # matches the first
                      [1, 1, 9, 9, 0.7],  # overlaps the first too (IoU 0.81), which is taken
                      [20, 20, 26, 29, 0.6],  # IoU 70/100 with the second
                      [40, 40, 49, 49, 0.45],  # under the score threshold
                      [60, 60, 69, 69, 0.9]], np.float32)  # matches nothing
    assert matched_count(reference, other) == (2, 4, 2)
    assert matched_count(reference, other, iou=0.75) == (1, 4, 2)
    assert matched_count(reference, other[:0]) == (0, 0, 2)


def test_head_errors_are_zero_for_the_same_detector(random_checkpoint):
    net, _ = random_checkpoint
    detector = Detector.from_config(net, small_config(64, 96))
    blobs = CalibrationBlobs(photos()[1:2], detector)
    assert head_errors(detector, detector, blobs) == dict.fromkeys(HEAD_NAMES, 0.0)


def test_cli_quantizes_and_compares(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    calib, check = tmp_path / "calib", tmp_path / "check"
    for folder, name in ((calib, PHOTOS[0]), (calib, PHOTOS[1]), (check, PHOTOS[2])):
        folder.mkdir(exist_ok=True)
        shutil.copy(cbook.get_sample_data(name, asfileobj=False), folder / name)
    out = tmp_path / "out" / "ssh_int8.onnx"
    small = ["--set", "TEST.SCALES", "[96]", "--set", "TEST.MAX_SIZE", "128"]
    assert main(["quantize", "--model", str(pth), "--calib-dir", str(calib), "--out", str(out),
                 "--check-dir", str(check), "--precisions", "bf16", "int8", *small]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "int8 calibration: 100%" in captured.err and "2/2 [" in captured.err  # tqdm bar: images done, ETA
    assert lines[0].startswith(f"{pth} -> {out} (int8,") and "minmax ranges of 2 blobs of 2 images" in lines[0]
    assert lines[1].startswith(f"check: 1 images of {check}")
    assert lines[2].split() == ["precision", *" ".join(HEAD_NAMES).split(), "fp32", "dets", "dets", "precision",
                                "recall"]
    assert [line.split()[0] for line in lines[3:]] == ["bf16", "int8"]
    assert all(len(line.split()) == 11 for line in lines[3:])
    assert main(["compare", "--model", str(pth), "--int8", str(out), "--check-dir", str(check),
                 "--precisions", "int8", *small]) == 0
    assert capsys.readouterr().out.splitlines()[2] == lines[4]  # the file gives what quantize measured
    assert check_record(out)["verified_by"].startswith("ONNX checker")  # recorded, so damage is caught on use
    assert graph_metadata(out)[SOURCE_KEY] == source_entry(pth)  # what --precision auto knows its weights by


def test_the_recorded_remake_command_writes_the_same_file(random_checkpoint, tmp_path, capsys):
    """Every option that shapes the int8 model is in its record's command: running it gives the same bytes."""
    _, pth = random_checkpoint
    calib = tmp_path / "calib"
    calib.mkdir()
    for name in PHOTOS:
        shutil.copy(cbook.get_sample_data(name, asfileobj=False), calib / name)
    out = tmp_path / "q.onnx"
    assert main(["quantize", "--model", str(pth), "--calib-dir", str(calib), "--images", "2", "--keep-float",
                 "m1.cls_score", "--out", str(out), "--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]) == 0
    remake = check_record(out)["remake"]
    assert remake == (f"python3 -m model.deploy quantize --model {pth} --calib-dir {calib} --images 2 --method minmax "
                      f"--keep-float m1.cls_score --set TEST.SCALES '[64]' --set TEST.MAX_SIZE 96 --out {out}")
    first = out.read_bytes()
    out.unlink()
    assert main(shlex.split(remake)[3:]) == 0
    assert out.read_bytes() == first
    assert "minmax ranges of 2 blobs of 2 images" in capsys.readouterr().out


def fail_if_called(*args, **kwargs):
    pytest.fail("calibration or detection ran before the inputs were checked")


@pytest.fixture
def nothing_expensive(monkeypatch):
    """Calibration and every detection fail the test: the checks must come first."""
    for name in ("quantize_network", "head_errors", "detection_agreement"):
        monkeypatch.setattr(f"model.deploy.__main__.{name}", fail_if_called)
    monkeypatch.setattr(Detector, "forward", fail_if_called)


def test_compare_checks_the_int8_graph_before_any_detection(random_checkpoint, tmp_path, capsys, nothing_expensive):
    _, pth = random_checkpoint
    check = tmp_path / "check"
    check.mkdir()
    shutil.copy(cbook.get_sample_data(PHOTOS[0], asfileobj=False), check / PHOTOS[0])
    relu = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "relu",
                                  [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                                  [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    not_ssh = tmp_path / "notssh.onnx"
    onnx.save(onnx.helper.make_model(relu, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(not_ssh))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    fp32 = export_onnx(random_checkpoint[0], tmp_path / "fp32.onnx")
    weights = tmp_path / "weights.pth"
    shutil.copy(pth, weights)
    expected = {not_ssh: f"error: {not_ssh}: not an SSH graph (inputs ['x'], outputs ['y']; expected [images]",
                junk: f"error: {junk}: not an ONNX model ONNX Runtime can load (",
                fp32: f"error: --int8 {fp32} is an fp32 graph, not an int8 one: make the int8 model with",
                weights: f"error: --int8 {weights}: not an .onnx file",
                tmp_path / "gone.onnx": f"error: model file not found: {tmp_path / 'gone.onnx'}."}
    for int8, message in expected.items():
        assert main(["compare", "--model", str(pth), "--int8", str(int8), "--check-dir", str(check)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.parametrize("case", ["out-is-a-folder", "out-under-a-file", "out-not-onnx", "check-dir-missing",
                                  "check-dir-unreadable"])
def test_quantize_checks_every_path_before_calibration(random_checkpoint, tmp_path, capsys, nothing_expensive, case):
    _, pth = random_checkpoint
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(cbook.get_sample_data(PHOTOS[0], asfileobj=False), calib / PHOTOS[0])
    out, check = tmp_path / "q.onnx", tmp_path / "check"
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    if case == "out-is-a-folder":
        out.mkdir()
    elif case == "out-under-a-file":
        out = blocker / "sub" / "q.onnx"
    elif case == "out-not-onnx":
        out = tmp_path / "q.pth"
    elif case == "check-dir-unreadable":
        check.mkdir()
        (check / "a.jpg").write_bytes(b"not a jpeg")
    before = sorted(p.name for p in tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # a.jpg is not used (tested below)
        assert main(["quantize", "--model", str(pth), "--calib-dir", str(calib), "--out", str(out),
                     "--check-dir", str(check)]) == 2
    expected = {"out-is-a-folder": f"error: cannot write {out}: it is a folder.",
                "out-under-a-file": f"error: cannot write {out}: {blocker} is a file, not a folder.",
                "out-not-onnx": f"error: --out {out}: the int8 model is an ONNX graph, give it a name ending in .onnx",
                "check-dir-missing": f"error: check folder {check} does not exist",
                "check-dir-unreadable": "error: none of the 1 check images could be read (first: "}[case]
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def write_numbered_images(folder, broken):
    """Images 0.png ... 4.png of pixel value 10 * i, those in `broken` not decodable."""
    folder.mkdir()
    for i in range(5):
        if i in broken:
            (folder / f"{i}.png").write_bytes(b"not a png")
        else:
            cv2.imwrite(str(folder / f"{i}.png"), np.full((8, 8, 3), 10 * i, np.uint8))


@pytest.mark.parametrize("broken, count, expected", [
    ({0}, 1, [1]),  # the one picked is broken: the next file replaces it
    ({0}, 2, [1, 4]),  # picks 0 and 4: 0 is replaced by the file after it
    ({4}, 3, [0, 2, 1]),  # picks 0, 2, 4: 4 has nothing after it, an unused file fills in
    ({0, 1, 3, 4}, 3, [2]),  # fewer readable images than asked: all of them
    (set(), 9, [0, 1, 2, 3, 4]),
])
def test_broken_images_are_replaced_by_readable_ones(tmp_path, broken, count, expected):
    folder = tmp_path / "images"
    write_numbered_images(folder, broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_images(folder, count, "check")
    assert [int(image[0, 0, 0]) // 10 for image in images] == expected
    named = sorted(str(w.message).split(":")[0] for w in caught if issubclass(w.category, CalibrationWarning))
    assert all(m.endswith("not used as a check image") for m in (str(w.message) for w in caught))
    assert set(named) <= {str(folder / f"{i}.png") for i in broken} and len(named) == len(set(named))


def test_compare_check_images_skips_a_broken_first_image(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    check = tmp_path / "check"
    write_numbered_images(check, {0})
    with pytest.warns(CalibrationWarning, match=f"^{check / '0.png'}: .*; not used as a check image$"):
        assert main(["compare", "--model", str(pth), "--check-dir", str(check), "--check-images", "1", "--precisions",
                     "bf16", "--set", "TEST.SCALES", "[32]", "--set", "TEST.MAX_SIZE", "32"]) == 0
    assert capsys.readouterr().out.startswith(f"check: 1 images of {check}")


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable"])
def test_cli_calibration_folder_errors_exit_2_and_write_nothing(random_checkpoint, tmp_path, capsys, case):
    _, pth = random_checkpoint
    calib = tmp_path / "calib"
    if case != "missing":
        calib.mkdir()
    if case == "unreadable":
        (calib / "a.jpg").write_bytes(b"not a jpeg")
        (calib / "b.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["quantize", "--model", str(pth), "--calib-dir", str(calib), "--out", str(out / "q.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"missing": f"error: calibration folder {calib} does not exist",
                "empty": f"error: calibration folder {calib} holds no images",
                "unreadable": "error: none of the 2 calibration images could be read (first: "}[case]
    assert err[-1].startswith(expected), err
    assert all(line.startswith("warning:") for line in err[:-1])
    assert not out.exists() or not any(out.iterdir())


def test_image_folder_errors_name_the_folder(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(CalibrationError, match=f"check folder {tmp_path / 'file.jpg'} is not a folder"):
        load_images(tmp_path / "file.jpg", role="check")


def test_calibration_folders_are_searched_as_test_py_dir_searches(tmp_path):
    """lib.sources.image_tree finds the images: any case of suffix, subfolders, hidden files and folders
    (macOS ._ files, .cache/) left out."""
    for name in ("b.jpg", "a/c.PNG", "a/d.webp", "a/._c.jpg", ".cache/e.jpg", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [tmp_path / "a" / "c.PNG", tmp_path / "a" / "d.webp", tmp_path / "b.jpg"]
    assert image_files(tmp_path) == image_tree(tmp_path) == found
