"""FDDB files: the tool's annotation, detection and list formats (one file or a folder of the ten
folds), errors that name file, line and value, the detection writer's box mapping, the ROC files."""
import sys

import numpy as np
import pytest

from lib.evaluation.fddb_io import (align, format_detections, format_roc, image_list_entries, read_annotations,
                                    read_detections, read_image_list, read_roc, to_ellipses, to_rects,
                                    write_detections, write_roc)

ANNOTATIONS = ("2002/08/11/big/img_591\r\n1\r\n123.583300 85.549500 1.265839 269.693400 161.781200  1\r\n"
               "2002/08/26/big/img_265\n0\n"
               "2003/01/17/big/img_610\n2\n10 5 -1.5 30 40 1\n\t12.5 6  0.25 60 70\n\n\n")


def test_annotations(tmp_path):
    path = tmp_path / "FDDB-fold-01-ellipseList.txt"
    path.write_bytes(ANNOTATIONS.encode())
    entries = read_annotations(path)
    assert [e.name for e in entries] == ["2002/08/11/big/img_591", "2002/08/26/big/img_265", "2003/01/17/big/img_610"]
    assert entries[0].regions.tolist() == [[123.5833, 85.5495, 1.265839, 269.6934, 161.7812]]
    assert entries[1].regions.shape == (0, 5)
    # the trailing "1" may be missing; tabs and double spaces separate numbers too
    assert entries[2].regions.tolist() == [[10, 5, -1.5, 30, 40], [12.5, 6, 0.25, 60, 70]]
    assert [e.where for e in entries] == [f"{path}:1", f"{path}:4", f"{path}:6"]


def test_detections_of_both_formats(tmp_path):
    (tmp_path / "rect.txt").write_text("a/b\n2\n1 2 3 4 0.5\n-1.5e1 2 3 4 .75\nc/d\n0\n")
    rect = read_detections(tmp_path / "rect.txt")
    assert rect[0].regions.tolist() == [[1, 2, 3, 4, 0.5], [-15, 2, 3, 4, 0.75]] and rect[1].regions.shape == (0, 5)
    (tmp_path / "ell.txt").write_text("a/b\n1\n20 10 1.5 30 40 0.9\n")
    assert read_detections(tmp_path / "ell.txt", "ellipse")[0].regions.tolist() == [[20, 10, 1.5, 30, 40, 0.9]]
    with pytest.raises(ValueError, match="box must be one of"):
        read_detections(tmp_path / "ell.txt", "pixels")


def test_a_folder_reads_the_ten_folds_in_order(tmp_path):
    for k in range(10, 0, -1):
        (tmp_path / f"FDDB-fold-{k:02d}.txt").write_text(f"f{k}/a f{k}/b\n")
        (tmp_path / f"FDDB-fold-{k:02d}-ellipseList.txt").write_text(f"f{k}/a\n0\nf{k}/b\n1\n2 1 0 5 5 1\n")
        (tmp_path / f"fold-{k:02d}-out.txt").write_text(f"f{k}/a\n1\n0 0 3 3 0.5\nf{k}/b\n0\n")
    names = [f"f{k}/{x}" for k in range(1, 11) for x in "ab"]
    assert read_image_list(tmp_path) == names
    assert [e.name for e in read_annotations(tmp_path)] == names
    assert [e.name for e in read_detections(tmp_path)] == names
    assert image_list_entries(tmp_path)[3] == (f"{tmp_path / 'FDDB-fold-02.txt'}:1", "f2/b")
    (tmp_path / "fold-07-out.txt").unlink()
    with pytest.raises(ValueError, match=r"needs all ten fold-01-out.txt .. fold-10-out.txt files; missing: "
                                         r"fold-07-out.txt"):
        read_detections(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_annotations(tmp_path / "nothing.txt")


@pytest.mark.parametrize("text, kind, message", [
    ("a\ntwo\n", "rect", r"f.txt:2: the number of regions of 'a' must be a whole number >= 0, not 'two'"),
    ("a\n-1\n", "rect", r"f.txt:2: .* not '-1'"),
    ("a\n", "rect", r"f.txt:1: the file ends after the image name 'a', before its count"),
    ("a\n2\n1 2 3 4 0.5\n", "rect", r"f.txt:3: the file ends before the 2 region lines of 'a' \(line 1\)"),
    ("a\n1\n1 2 3 4\n", "rect", r"f.txt:3: 4 numbers; a region line holds 5 numbers: '1 2 3 4'"),
    ("a\n1\n20 10 1.5 30 40 0.9\n", "rect", r"f.txt:3: 6 numbers; a region line holds 5 numbers"),
    ("a\n1\n1 2 x 4 0.5\n", "rect", r"f.txt:3: 'x' is not a number"),
    ("a\n0\nb\n1\n1 2 3 4 nan\n", "rect", r"f.txt:5: 'nan' is not a number"),
    ("a\n1\n1 2 1e400 4 0.5\n", "rect", r"f.txt:3: 1e400 is not a finite number below 2\^30 in magnitude"),
    ("a\n1\n1 2 3e9 4 0.5\n", "rect", r"f.txt:3: 3e9 is not a finite number below 2\^30"),
    ("a\n1\n1 2 3 4 0.5\n\nb\n0\n", "rect", r"f.txt:4: an empty line where an image name is expected"),
    ("a\n1\n-2 1 0 5 5 0.5\n", "ellipse", r"f.txt:3: an ellipse radius is negative: '-2 1 0 5 5 0.5'"),
    ("a\n1\n2 1 0 5\n", "annotations", r"f.txt:3: 4 numbers; a region line holds 5 or 6 numbers"),
])
def test_bad_files_name_file_line_and_value(tmp_path, text, kind, message):
    path = tmp_path / "f.txt"
    path.write_text(text)
    read = read_annotations if kind == "annotations" else lambda p: read_detections(p, kind)
    with pytest.raises(ValueError, match=message):
        read(path)


def test_a_binary_file_is_refused(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"a\n1\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"f.txt: not a text file \(byte 4 is not UTF-8\)"):
        read_detections(tmp_path / "f.txt")


def test_align_checks_names_and_order(tmp_path):
    (tmp_path / "list.txt").write_text("x/1\nx/2\n")
    (tmp_path / "ann.txt").write_text("x/1\n0\nx/2\n0\nx/3\n0\n")
    (tmp_path / "det.txt").write_text("x/1\n0\nx/3\n0\n")
    listed = image_list_entries(tmp_path / "list.txt")
    names, where = [n for _, n in listed], [w for w, _ in listed]
    ann = read_annotations(tmp_path / "ann.txt")
    a, d = align(names, ann, ann, where)  # entries beyond the list are ignored, as by the tool
    assert [e.name for e in a] == names and len(d) == 2
    with pytest.raises(ValueError, match=rf"det.txt:3: the detections give image 2 as 'x/3', the image list as "
                                         rf"'x/2' \({tmp_path / 'list.txt'}:2\)"):
        align(names, ann, read_detections(tmp_path / "det.txt"), where)
    with pytest.raises(ValueError, match=r"the detections end after 1 images; the image list has 2: no entry for "
                                         r"image 2, 'x/2'"):
        align(names, ann, read_detections(tmp_path / "det.txt")[:1], where)


def test_box_mapping_by_hand():
    boxes = np.array([[10.0, 20.0, 29.0, 59.0, 0.9],    # 20 px wide, 40 tall
                      [0.0, 0.0, 9.0, 4.0, 0.5]])       # 10 wide, 5 tall
    # rect: the tool fills (left, top) .. (left + width, top + height) inclusive: width x2 - x1
    assert to_rects(boxes).tolist() == [[10, 20, 19, 39, 0.9], [0, 0, 9, 4, 0.5]]
    # ellipse: radii half the +1 sides, the larger first; vertical major axis when taller than wide
    assert to_ellipses(boxes).tolist() == [[20, 10, np.pi / 2, 19.5, 39.5, 0.9], [5, 2.5, 0, 4.5, 2, 0.5]]


def test_detection_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    dets = {"a/1": rng.uniform(0, 300, (4, 5)).astype(np.float32), "b/2": np.zeros((0, 5))}
    dets["a/1"][:, 2:4] += dets["a/1"][:, :2]
    names = ["a/1", "b/2", "a/1"]  # a name may repeat (the fold lists do)
    for box, convert in (("rect", to_rects), ("ellipse", to_ellipses)):
        path = write_detections(tmp_path / f"{box}.txt", names, dets, box)
        back = read_detections(path, box)
        assert [e.name for e in back] == names
        for name, entry in zip(names, back):
            np.testing.assert_array_equal(entry.regions, convert(dets[name]))  # exactly: repr round-trips
    assert format_detections(["a/1"], {"a/1": [[1, 2, 3, 5, 0.25]]}) == "a/1\n1\n1.0 2.0 2.0 3.0 0.25\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ellipse.txt", "rect.txt"]
    with pytest.raises(ValueError, match="no detections given for image 'c/3'"):
        format_detections(["c/3"], dets)
    with pytest.raises(ValueError, match="a/1: detections hold NaN or Inf"):
        format_detections(["a/1"], {"a/1": [[0, 0, np.inf, 1, 0.5]]})


def test_roc_files_print_like_cpp_streams(tmp_path):
    result = {"faces": 3, "discrete": np.array([[1 / 3, 1234567, 0.05], [0.0, 0, sys.float_info.max]]),
              "continuous": np.array([[0.123456789, 1234567], [0.0, 0]])}
    disc, cont = format_roc(result)
    assert disc == "0.333333 1.23457e+06 0.05\n0 0 1.79769e+308\n"
    assert cont == "0.123457 1.23457e+06\n0 0\n"
    assert format_roc(dict(result, faces=0)) == ("0 0 0.05\n0 0 1.79769e+308\n", "0 0\n0 0\n")
    paths = write_roc(tmp_path / "runs" / "ssh_", result)
    assert [p.name for p in paths] == ["ssh_DiscROC.txt", "ssh_ContROC.txt"]
    assert paths[0].read_text() == disc and paths[1].read_text() == cont
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ssh_ContROC.txt", "ssh_DiscROC.txt"]
    np.testing.assert_array_equal(read_roc(paths[0]), [[0.333333, 1234570], [0, 0]])
    np.testing.assert_array_equal(read_roc(paths[1]), [[0.123457, 1234570], [0, 0]])


def test_bad_roc_files(tmp_path):
    (tmp_path / "a.txt").write_text("0.5 10 0.9\n\n0.4\n")
    with pytest.raises(ValueError, match=r"a.txt:3: a ROC line starts with two numbers"):
        read_roc(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("\n")
    with pytest.raises(ValueError, match="b.txt: no ROC points"):
        read_roc(tmp_path / "b.txt")
