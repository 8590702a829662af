"""read_pred on yolov7-face's real prediction files with bad rows added, and on 5,000 fuzzed copies.

A bad row (a non-finite number, a negative size, a score beyond float32) is left out alone with a
PredictionWarning naming file:line; nothing else changes. Independent truth: the official tool's APs
for the unchanged files, and the rows the fuzzer itself put in or took out.
"""
import math
import re
import shutil
import warnings

import numpy as np
import pytest

from lib.evaluation.evaluation import evaluation
from lib.evaluation.ground_truth import SETTINGS, GroundTruth
from lib.evaluation.norm_score import norm_score
from lib.evaluation.read_pred import PredictionWarning, parse_pred, read_pred, sort_by_score
from lib.evaluation.voc_ap import voc_ap

SUMMARY = re.compile(r": (\d+) box row\(s\) in (\d+) file\(s\) left out of the evaluation")
NAMED = re.compile(r"^(.*\.txt):(\d+): (non-finite|negative) .*; the row is left out$")
# Values that make a row bad, by column: x and y only when not finite; w and h also when negative;
# the score also beyond float32 (norm_score.m normalises in single precision).
BAD_ANY = ["inf", "-inf", "Inf", "-Inf", "nan", "NaN", "1e400", "-1e400", "1d999"]
BAD = {0: BAD_ANY, 1: BAD_ANY, 2: BAD_ANY + ["-5", "-0.5", "-1e-9"], 3: BAD_ANY + ["-5", "-0.5", "-1e-9"],
       4: BAD_ANY + ["1e39", "-1e39", "1e308"]}
# What the fuzzer writes in place of a number: bad values, odd but valid ones, and text.
TOKENS = BAD_ANY + ["1e39", "1e308", "-1e308", "-5", "-0.5", "0", "-0", "+7", ".5", "5.", "1d3", "1E-3",
                    "abc", "1_0", "0x10", "1e", "--1", "", "1,2", "Infinity", "nan(1)", "1;2", "0.5 0.5"]


def _evaluate(preds, gt):
    curves = evaluation(norm_score(preds), gt, SETTINGS)
    return {s: voc_ap(c[:, 1], c[:, 0]) for s, c in curves.items()}


def _quietly(call, *args):
    """call(*args) and its warnings: every one must be a PredictionWarning."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = call(*args)
    others = [f"{w.category.__name__}: {w.message}" for w in record if w.category is not PredictionWarning]
    assert others == []
    return out, [str(w.message) for w in record]


def _named(messages):
    """{file path: [line, ...]} of the row warnings, and the (rows, files) of the summary warning."""
    named, summary = {}, (0, 0)
    for m in messages:
        if match := NAMED.match(m):
            named.setdefault(match[1], []).append(int(match[2]))
        elif match := SUMMARY.search(m):
            summary = int(match[1]), int(match[2])
    return named, summary


def _rows(lines):
    """x y w h score rows of clean box lines, read with plain float()."""
    return [[float(t) for t in line.split()[:5]] for line in lines]


def _with_rows(text, rows, rng):
    """`text` (a clean prediction file) with the box lines `rows` inserted at random places and the
    count raised; returns (new text, 1-based lines of the inserted rows)."""
    lines = text.split("\n")
    count = int(lines[1])
    box = lines[2:2 + count]
    new = [False] * len(box)
    for row in rows:
        k = int(rng.integers(len(box) + 1))
        box.insert(k, row)
        new.insert(k, True)
    lines[1:2 + count] = [str(len(box))] + box
    return "\n".join(lines), [k + 3 for k, n in enumerate(new) if n]


def _bad_row(rng):
    """A box line with one to three bad values, columns separated by spaces, tabs or commas."""
    values = ["5", "5", "30", "30", "0.5"]
    for column in rng.choice(5, size=int(rng.integers(1, 4)), replace=False):
        values[column] = str(rng.choice(BAD[int(column)]))
    return str(rng.choice([" ", "\t", ", ", " ,"])).join(values)


def _chaos(text, rng):
    """`text` after one to three random edits: a byte flipped, a line cut, duplicated or joined, the
    file truncated, a number replaced, line ends changed, a bad row inserted."""
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(8))
        lines = text.split("\n")
        if op == 0 and text:
            k = int(rng.integers(len(text)))
            text = text[:k] + chr(int(rng.integers(256))) + text[k + 1:]
        elif op == 1:
            del lines[int(rng.integers(len(lines)))]
            text = "\n".join(lines)
        elif op == 2:
            k = int(rng.integers(len(lines)))
            text = "\n".join(lines[:k + 1] + lines[k:])
        elif op == 3 and "\n" in text:
            k = [m.start() for m in re.finditer("\n", text)][int(rng.integers(text.count("\n")))]
            text = text[:k] + text[k + 1:]
        elif op == 4:
            text = text[:int(rng.integers(len(text) + 1))]
        elif op == 5:
            tokens = list(re.finditer(r"[^\s,]+", text))
            if tokens:
                t = tokens[int(rng.integers(len(tokens)))]
                text = text[:t.start()] + str(rng.choice(TOKENS)) + text[t.end():]
        elif op == 6:
            text = text.replace("\n", str(rng.choice(["\r\n", "\r"])))
        elif op == 7 and len(lines) > 2 and re.fullmatch(r"\d+", lines[1]):
            text = _with_rows(text, [_bad_row(rng)], rng)[0]
    return text


def _is_bad(row):
    """The rule of the docs, written out: not finite, negative w or h, or a score beyond float32."""
    x, y, w, h, s = (float(v) for v in row)
    with np.errstate(over="ignore"):
        single = float(np.float32(s))
    return not all(math.isfinite(v) for v in (x, y, w, h, s, single)) or w < 0 or h < 0


def _oracle(text, name):
    """(boxes read_pred must give, lines it must name, the whole-image problem) of one file, from
    the official reading rules (parse_pred) and `_is_bad`."""
    raw, problem = parse_pred(text, name)
    bad = np.array([_is_bad(r) for r in raw], dtype=bool)
    return sort_by_score(raw[~bad]), [k + 3 for k in np.flatnonzero(bad)], problem


def _sorted_rows(rows):
    return sorted(map(tuple, np.asarray(rows, dtype=np.float64).reshape(-1, 5).tolist()))


@pytest.fixture(scope="module")
def real_texts(wider_gt, yolov7face):
    return [(yolov7face / e / f"{i}.txt").read_text() for e, i in zip(wider_gt.events, wider_gt.images)]


@pytest.fixture(scope="module")
def today(wider_gt, yolov7face):
    """read_pred of the unchanged files."""
    return read_pred(yolov7face, wider_gt)


@pytest.mark.parametrize("row, first, what", [("10 10 20 20 inf", True, "non-finite score inf"),
                                              ("5 5 30 30 nan", False, "non-finite score nan")])
def test_one_bad_row_in_a_real_file_changes_nothing_but_warns(wider_gt, yolov7face, yolov7face_results,
                                                              tmp_path, deadline, row, first, what):
    """Before: the inf row gave easy/medium/hard 0.069/0.116/0.207; the nan row, last of a long file,
    hung (regex backtracking)."""
    folder = shutil.copytree(yolov7face, tmp_path / "p")
    path = max(folder.glob("*/*.txt"), key=lambda p: p.stat().st_size)  # 0_Parade_marchingband_1_465
    lines = path.read_text().rstrip("\n").split("\n")
    count = int(lines[1])
    line = 3 if first else count + 3
    lines[1:2] = [str(count + 1)]
    lines.insert(line - 1, row)
    path.write_text("\n".join(lines) + "\n")
    with deadline(60):  # about 3 s; the nan row ran for minutes before
        results, messages = _quietly(read_pred, folder, wider_gt)
        curves = evaluation(norm_score(results), wider_gt, SETTINGS)
    assert messages == [f"{path}:{line}: {what}; the row is left out",
                        f"{folder}: 1 box row(s) in 1 file(s) left out of the evaluation (a non-finite number "
                        "or a negative width or height; each named above)"]
    for s, c in curves.items():
        assert voc_ap(c[:, 1], c[:, 0]) == yolov7face_results[s]["ap"]
        np.testing.assert_array_equal(c[:, 0], yolov7face_results[s]["precision"])
        np.testing.assert_array_equal(c[:, 1], yolov7face_results[s]["recall"])


def test_bad_rows_added_to_300_real_files_give_the_official_ap(wider_gt, yolov7face, yolov7face_results,
                                                               tmp_path, deadline):
    rng = np.random.default_rng(20)
    folder = shutil.copytree(yolov7face, tmp_path / "p")
    expected = {}
    for j in rng.choice(len(wider_gt), size=300, replace=False):
        path = folder / wider_gt.events[j] / f"{wider_gt.images[j]}.txt"
        text, lines = _with_rows(path.read_text(), [_bad_row(rng) for _ in range(int(rng.integers(1, 4)))], rng)
        path.write_text(text)
        expected[str(path)] = lines
    with deadline(60):
        preds, messages = _quietly(read_pred, folder, wider_gt)
        aps = _evaluate(preds, wider_gt)
    named, summary = _named(messages)
    assert named == expected
    assert summary == (sum(map(len, expected.values())), 300) and len(messages) == summary[0] + 1
    assert aps == {s: r["ap"] for s, r in yolov7face_results.items()}


def test_5000_fuzzed_files_read_quietly_and_every_bad_row_is_named(wider_gt, real_texts, tmp_path, deadline):
    """Seeded mutations of real files. 'inject' files: bad values written into known rows, so the
    rows kept and named are known without the reader; 'chaos' files: any edit, checked against the
    official reading rules (parse_pred) and the bad-row rule written out in `_is_bad`."""
    rng = np.random.default_rng(5000)
    sources = rng.integers(len(real_texts), size=5000)
    injected, texts = {}, []
    for i, j in enumerate(sources):
        text = real_texts[j]
        if rng.random() < 0.4:
            lines = text.split("\n")
            count = int(lines[1])
            rows = {int(k) for k in rng.choice(count, size=min(count, int(rng.integers(1, 4))), replace=False)}
            for k in rows:
                values = lines[2 + k].split()
                column = int(rng.integers(5))
                values[column] = str(rng.choice(BAD[column]))
                lines[2 + k] = str(rng.choice([" ", "\t", ","])).join(values)
            text = "\n".join(lines)
            kept = [r for k, r in enumerate(_rows(real_texts[j].split("\n")[2:2 + count])) if k not in rows]
            injected[i] = (sorted(k + 3 for k in rows), kept)
        else:
            text = _chaos(text, rng)
        texts.append(text)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"f{i:04d}.txt").write_bytes(text.encode("latin-1"))
    gt = GroundTruth(["."] * 5000, [f"f{i:04d}" for i in range(5000)], [wider_gt.boxes[j] for j in sources],
                     {s: [wider_gt.keep[s][j] for j in sources] for s in SETTINGS})

    with deadline(20):  # about 2 s; one backtracking regex would not end
        preds, messages = _quietly(read_pred, folder, gt)
        aps = _quietly(_evaluate, preds, gt)[0]
    with deadline(20):
        oracle = [_oracle(text, str(folder / f"f{i:04d}.txt")) for i, text in enumerate(texts)]
    named, summary = _named(messages)
    problems = [m for m in messages if m.endswith("; the image has no predictions")]
    assert len(messages) == len(problems) + sum(map(len, named.values())) + (summary != (0, 0))
    n_named = n_problems = 0
    for i, (boxes, lines, problem) in enumerate(oracle):
        name = str(folder / f"f{i:04d}.txt")
        np.testing.assert_array_equal(preds[i], boxes)
        assert named.get(name, []) == lines
        if problem:
            assert f"{problem}; the image has no predictions" in problems
        if i in injected:
            assert problem is None and lines == injected[i][0]
            assert _sorted_rows(preds[i]) == _sorted_rows(injected[i][1])
        n_named += len(lines)
        n_problems += bool(problem)
    assert summary == (n_named, len(named)) and n_problems == len(problems)
    # every kind of case occurred
    assert len(injected) > 1500 and n_named > 3000 and n_problems > 500
    assert all(0 <= ap <= 1 for ap in aps.values())


def test_fuzzed_files_in_place_of_three_events_leave_the_other_images_as_today(
        wider_gt, yolov7face, real_texts, today, tmp_path, deadline):
    rng = np.random.default_rng(3)
    folder = shutil.copytree(yolov7face, tmp_path / "p")
    events = set(rng.choice(sorted(set(wider_gt.events)), size=3, replace=False))
    changed = [j for j, e in enumerate(wider_gt.events) if e in events]
    expected = list(today)
    with deadline(60):
        for j in changed:
            path = folder / wider_gt.events[j] / f"{wider_gt.images[j]}.txt"
            text = _chaos(real_texts[j], rng)
            path.write_bytes(text.encode("latin-1"))
            expected[j] = _oracle(text, str(path))[0]
        preds, _ = _quietly(read_pred, folder, wider_gt)
        aps = _quietly(_evaluate, preds, wider_gt)[0]
    for j in range(len(wider_gt)):
        np.testing.assert_array_equal(preds[j], expected[j])
    assert len(changed) > 50 and sum(not np.array_equal(preds[j], today[j]) for j in changed) > len(changed) / 2
    assert all(0 <= ap <= 1 for ap in aps.values())
