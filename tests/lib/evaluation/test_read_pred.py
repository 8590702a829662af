"""Prediction-file reading rules of the official read_pred.m, and bad input (warn, never crash)."""
import warnings

import numpy as np
import pytest

from lib.evaluation.ground_truth import GroundTruth
from lib.evaluation.read_pred import (SINGLE_INF, PredictionWarning, drop_bad_rows, parse_pred, read_pred,
                                      sort_by_score, str2num)

IMAGES = ["a", "b"]


@pytest.fixture
def gt():
    boxes = [np.zeros((1, 4), dtype=np.int64)] * 3
    return GroundTruth(["0--Ev", "0--Ev", "1--Other"], IMAGES + ["c"], boxes, {})


def _write(folder, event, image, text, mode="w"):
    path = folder / event / f"{image}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("line, numbers", [
    ("1 2 3 4 0.5", [1, 2, 3, 4, 0.5]),
    ("  1\t2,3 ,  4\t 0.5 ", [1, 2, 3, 4, 0.5]),
    ("-1 +2 3e1 4E-1 .5", [-1, 2, 30, 0.4, 0.5]),
    ("1d1 2. Inf -inf", [10, 2, np.inf, -np.inf]),
    ("1,2,", [1, 2]),
])
def test_str2num_reads_matlab_number_lists(line, numbers):
    assert str2num(line) == numbers


@pytest.mark.parametrize("line", ["", "abc", "1 2 x", "1_0 2", "1 - 2", "1;2", ",1", "infinity", "0x10"])
def test_str2num_rejects_what_is_not_a_plain_number_list(line):
    assert str2num(line) is None


def test_parse_pred_reads_first_count_lines_and_first_five_numbers():
    text = "0--Ev/a.jpg\n 2 \n1 2 3 4 0.5 9 9\n5 6 7 8 0.25\n99 99 99 99 0.99\n"
    boxes, problem = parse_pred(text)
    assert problem is None
    assert boxes.tolist() == [[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]]


def test_parse_pred_count_zero_ignores_the_rest():
    boxes, problem = parse_pred("name\n0\nnot numbers at all\n")
    assert problem is None and boxes.shape == (0, 5)


def test_parse_pred_accepts_crlf_and_missing_final_newline():
    boxes, problem = parse_pred("name\r\n1\r\n1 2 3 4 0.5")
    assert problem is None and boxes.tolist() == [[1, 2, 3, 4, 0.5]]


@pytest.mark.parametrize("text, where", [
    ("", "no count line"),
    ("name only\n", "no count line"),
    ("name\n\n1 2 3 4 0.5\n", ":2:"),
    ("name\ntwo\n", ":2:"),
    ("name\n2 3\n", ":2:"),
    ("name\n1.5\n1 2 3 4 .5\n", ":2:"),
    ("name\n-1\n", ":2:"),
    ("name\n3\n1 2 3 4 0.5\n1 2 3 4 0.5\n", ":5: count says 3"),
    ("name\n2\n1 2 3 4 0.5\n1 2 3 4\n", ":4: 4 number(s)"),
    ("name\n2\n1 2 3 4 0.5\n1 2 3 4 junk\n", ":4: unreadable"),
    ("name\n1\n\n1 2 3 4 0.5\n", ":3:"),
])
def test_parse_pred_problems_name_the_line_and_give_no_boxes(text, where):
    boxes, problem = parse_pred(text, "f.txt")
    assert boxes.shape == (0, 5)
    assert problem.startswith("f.txt") and where in problem


def test_read_pred_sorts_descending_stable_nan_first(tmp_path, gt):
    # NaN scores come first (MATLAB sort); read_pred leaves NaN rows out, sort_by_score keeps the rule.
    boxes = np.array([[1, 0, 0, 0, 0.5], [2, 0, 0, 0, 0.9], [3, 0, 0, 0, 0.5], [4, 0, 0, 0, np.nan],
                      [5, 0, 0, 0, 0.5]])
    assert sort_by_score(boxes)[:, 0].tolist() == [4, 2, 1, 3, 5]
    _write(tmp_path, "0--Ev", "a", "a\n4\n1 0 0 0 0.5\n2 0 0 0 0.9\n3 0 0 0 0.5\n5 0 0 0 0.5\n")
    _write(tmp_path, "0--Ev", "b", "b\n0\n")
    _write(tmp_path, "1--Other", "c", "c\n1\n1 2 3 4 1e-1\n")
    preds = read_pred(tmp_path, gt)
    assert preds[0][:, 0].tolist() == [2, 1, 3, 5]
    assert preds[1].shape == (0, 5)
    assert preds[2].tolist() == [[1, 2, 3, 4, 0.1]]


def test_read_pred_warns_per_bad_file_and_keeps_going(tmp_path, gt):
    _write(tmp_path, "0--Ev", "a", b"", mode="wb")
    _write(tmp_path, "0--Ev", "b", "b\n2\n1 2 3 4 0.5\n")
    with pytest.warns(PredictionWarning) as record:
        preds = read_pred(tmp_path, gt)
    messages = [str(w.message) for w in record]
    assert len(messages) == 3
    assert "a.txt: no count line" in messages[0]
    assert "b.txt:4: count says 2 detections, file has 1" in messages[1]
    assert "no prediction file for 1 of 3 images (e.g. 1--Other/c.txt)" in messages[2]
    assert [p.shape for p in preds] == [(0, 5)] * 3


def test_read_pred_missing_file_and_unreadable_bytes(tmp_path, gt):
    _write(tmp_path, "0--Ev", "b", b"b\n1\n1 2 3 4 0.\xff5\n", mode="wb")
    (tmp_path / "1--Other" / "c.txt").mkdir(parents=True)  # a folder where a file should be
    with pytest.warns(PredictionWarning) as record:
        preds = read_pred(tmp_path, gt)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 3
    assert "b.txt:3: unreadable numbers" in messages[0]
    assert "c.txt: cannot read" in messages[1]
    assert "no prediction file for 1 of 3 images (e.g. 0--Ev/a.txt)" in messages[2]
    assert all(p.shape == (0, 5) for p in preds)


def test_read_pred_missing_folder_raises(tmp_path, gt):
    with pytest.raises(FileNotFoundError, match="predictions folder not found"):
        read_pred(tmp_path / "nope", gt)


def test_read_pred_valid_files_do_not_warn(tmp_path, gt):
    for event, image in zip(gt.events, gt.images):
        _write(tmp_path, event, image, f"{event}/{image}.jpg\n1\n1 2 3 4 0.5 \n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_pred(tmp_path, gt)


def _all_files(folder, gt):
    for event, image in zip(gt.events, gt.images):
        _write(folder, event, image, f"{image}\n1\n1 2 3 4 0.5\n")


def test_read_pred_with_no_file_at_all_raises_with_the_layout(tmp_path, gt):
    """An empty folder, or one level too high or too low, is an error, not AP 0."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no prediction file for any of the 3 images in .*empty: "
                                                r"expected <event>/<image>.txt files such as .*0--Ev/a.txt$"):
        read_pred(tmp_path / "empty", gt)
    _all_files(tmp_path / "run" / "detections", gt)
    with pytest.raises(FileNotFoundError, match=r"one level down: give .*run/detections$"):
        read_pred(tmp_path / "run", gt)
    with pytest.raises(FileNotFoundError, match="holds .txt files itself.*give its parent"):
        read_pred(tmp_path / "run" / "detections" / "0--Ev", gt)
    (tmp_path / "run" / "detections" / "plots").mkdir()
    with pytest.raises(FileNotFoundError, match=r"beside it: give .*run/detections$"):
        read_pred(tmp_path / "run" / "detections" / "plots", gt)
    archive = tmp_path / "preds.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(FileNotFoundError, match="an archive: unpack it"):
        read_pred(archive, gt)


def test_eval_cli_on_an_empty_folder_exits_2(tmp_path, gt, monkeypatch, capsys):
    import eval as eval_script

    monkeypatch.setattr(eval_script, "load_ground_truth", lambda path: gt)
    (tmp_path / "empty").mkdir()
    assert eval_script.main(["--predictions", str(tmp_path / "empty"), "--gt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no prediction file for any of the 3 images" in err and "AP" not in err


GOOD = "1 2 3 4 0.5"
GOOD2 = "5 6 7 8 0.25"


@pytest.mark.parametrize("row, what", [
    ("10 10 20 20 inf", "non-finite score inf"),
    ("10 10 20 20 -Inf", "non-finite score -inf"),
    ("5 5 30 30 nan", "non-finite score nan"),
    ("5 5 30 30 NaN", "non-finite score nan"),
    ("5 5 30 30 1e400", "non-finite score inf"),        # beyond double: str2num gives Inf
    ("5 5 30 30 1e39", "non-finite score 1e+39 (beyond float32)"),  # Inf in norm_score's single
    ("Inf 5 30 30 0.5", "non-finite x inf"),
    ("5 -1d999 30 30 0.5", "non-finite y -inf"),
    ("5 5 NaN 30 0.5", "non-finite w nan"),
    ("5 5 30 inf 0.5", "non-finite h inf"),
    ("5 5 -3 30 0.5", "negative w -3"),
    ("5 5 30 -0.5 0.5", "negative h -0.5"),
    ("5\t5, -30, -1e3, nan", "non-finite score nan; negative w -30, h -1000"),
])
def test_read_pred_leaves_out_a_bad_row_alone_and_names_it(tmp_path, gt, row, what):
    _write(tmp_path, "0--Ev", "a", f"a\n4\n{GOOD}\n{row}\n{GOOD2}\n9 9 9 9 0.75 \n")
    _write(tmp_path, "0--Ev", "b", f"b\n1\n{GOOD}\n")
    _write(tmp_path, "1--Other", "c", "c\n0\n")
    with pytest.warns(PredictionWarning) as record:
        preds = read_pred(tmp_path, gt)
    messages = [str(w.message) for w in record]
    assert messages == [f"{tmp_path / '0--Ev' / 'a.txt'}:4: {what}; the row is left out",
                        f"{tmp_path}: 1 box row(s) in 1 file(s) left out of the evaluation (a non-finite number "
                        "or a negative width or height; each named above)"]
    assert preds[0].tolist() == [[9, 9, 9, 9, 0.75], [1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]]
    assert preds[1].tolist() == [[1, 2, 3, 4, 0.5]] and preds[2].shape == (0, 5)


def _read_three(tmp_path, gt, a, b):
    """read_pred of files a and b of event 0--Ev and a valid c of 1--Other: (preds, warning messages)."""
    _write(tmp_path, "0--Ev", "a", a)
    _write(tmp_path, "0--Ev", "b", b)
    _write(tmp_path, "1--Other", "c", "c\n1\n1 2 3 4 0.5\n")
    with pytest.warns(PredictionWarning) as record:
        preds = read_pred(tmp_path, gt)
    return preds, [str(w.message) for w in record]


def test_read_pred_counts_bad_rows_over_files_and_keeps_zero_sizes(tmp_path, gt):
    # w = 0 and h = 0 are one-pixel boxes for the official tool (x2 = x + w, inclusive): kept.
    preds, messages = _read_three(tmp_path, gt, "a\n3\n1 2 0 0 0.5\nnan 0 1 1 0.5\n3 4 0 5 0.25\n",
                                  "b\n2\n1 2 3 -4 0.5\n1 2 3 4 -inf\n")
    a, b = tmp_path / "0--Ev" / "a.txt", tmp_path / "0--Ev" / "b.txt"
    assert [m.split(": ")[0] for m in messages] == [f"{a}:4", f"{b}:3", f"{b}:4", str(tmp_path)]
    assert "3 box row(s) in 2 file(s) left out" in messages[-1]
    assert preds[0].tolist() == [[1, 2, 0, 0, 0.5], [3, 4, 0, 5, 0.25]]
    assert preds[1].shape == (0, 5) and preds[2].tolist() == [[1, 2, 3, 4, 0.5]]


def test_whole_image_problems_stay_whole_image_problems(tmp_path, gt):
    """A bad row does not change the official rules: a later unreadable line still empties the image."""
    preds, messages = _read_three(tmp_path, gt, "a\n3\n1 2 3 4 inf\n1 2 3 4 0.5\n1 2 3 4 junk\n",
                                  "b\n2\n1 2 3 4 nan\n")
    assert len(messages) == 2
    assert "a.txt:5: unreadable numbers" in messages[0] and "b.txt:4: count says 2" in messages[1]
    assert preds[0].shape == preds[1].shape == (0, 5)


def test_a_score_is_bad_exactly_where_float32_makes_it_inf():
    edge = np.nextafter(SINGLE_INF, 0)
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(SINGLE_INF)) and np.float32(edge) == np.finfo(np.float32).max
    boxes = np.array([[1, 2, 3, 4, SINGLE_INF], [1, 2, 3, 4, edge], [1, 2, 3, 4, -SINGLE_INF], [1, 2, 3, 4, -edge]])
    kept, dropped = drop_bad_rows(boxes, "f.txt")
    assert kept[:, 4].tolist() == [edge, -edge]
    assert dropped == ["f.txt:3: non-finite score 3.40282e+38 (beyond float32)",
                       "f.txt:5: non-finite score -3.40282e+38 (beyond float32)"]


def test_drop_bad_rows_returns_a_clean_array_as_is():
    boxes = np.array([[1, 2, 3, 4, 0.5], [1, 2, 0, 0, -7.0]])
    kept, dropped = drop_bad_rows(boxes, "f.txt")
    assert kept is boxes and dropped == []


@pytest.mark.parametrize("last", ["5 5 30 30 nan", "5 5 30 30 junk", "5 5 30 30", "5 5 30 30 0.5 x"])
def test_a_failed_fast_match_does_not_backtrack_for_ever(deadline, last):
    """`\\d+\\.?\\d*` matched `669` three ways, so a last line outside the fast pattern made the block
    regex try 3**(numbers) splits: a hang after about 10 lines."""
    text = "name\n2001\n" + "669 260 70 95 0.723\n" * 2000 + last + "\n"
    with deadline(2):
        boxes, problem = parse_pred(text, "f.txt")
        numbers = str2num(" ".join(["123456"] * 20000) + " x")
    assert numbers is None
    if last.endswith("nan"):
        assert problem is None and boxes.shape == (2001, 5) and np.isnan(boxes[-1, 4])
    else:
        assert boxes.shape == (0, 5) and problem.startswith("f.txt:2003: ")
