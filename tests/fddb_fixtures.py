"""The FDDB tool's C++ read straightforwardly, for the tests: its OpenCV drawing calls on full-image
masks, its runHungarian per threshold, Results and Results::merge statement by statement; and
generated images of faces and detections."""
import math
import sys

import cv2
import numpy as np

from lib.evaluation.hungarian import _Problem

DBL_MAX = sys.float_info.max


def tool_ellipse_mask(row, width, height):
    """The tool's EllipseR::display on a zeroed mask, written out (for comparison)."""
    ra, rb, theta, cx, cy = row[:5]
    m = np.zeros((height, width), np.uint8)
    angle = 180 - (math.pi - theta) * 180 / math.pi
    centre = (int(np.rint(np.float32(cx))), int(np.rint(np.float32(cy))))
    cv2.ellipse(m, centre, (int(ra), int(rb)), angle, 0, 360, 10, -1)
    return m > 0


def tool_rect_mask(row, width, height):
    """The tool's RectangleR::display on a zeroed mask."""
    x, y, w, h = row[:4]
    m = np.zeros((height, width), np.uint8)
    p1 = (int(np.rint(np.float32(x))), int(np.rint(np.float32(y))))
    p2 = (int(np.rint(np.float32(x + w))), int(np.rint(np.float32(y + h))))
    cv2.rectangle(m, p1, p2, 10, -1)
    return m > 0


def reference_lines(annotations, detections, sizes, box="rect"):
    """(DiscROC, ContROC) text of the tool, following its C++ literally: full-image masks, pairwise
    scores, runHungarian per unique threshold, Results, Results::merge, saveROC."""
    cum = []
    for ann, det, (w, h) in zip(annotations, detections, sizes):
        draw = tool_rect_mask if box == "rect" else tool_ellipse_mask
        a_masks = [tool_ellipse_mask(a, w, h) for a in ann]
        d_masks = [draw(d, w, h) for d in det]
        pws = [[np.count_nonzero(a & d) / np.count_nonzero(a | d) for d in d_masks] for a in a_masks]
        n_annot, scores = len(ann), [float(d[-1]) for d in det]
        if not scores:
            image = [dict(N=n_annot, thr=DBL_MAX, tpc=0.0, tpd=0.0, fp=0.0)]
        else:
            image = []
            for t in sorted(set(scores)):
                valid = [s >= t for s in scores]
                map_i = []
                for i in range(n_annot):
                    total = 0.0
                    for j in range(len(scores)):
                        if valid[j]:
                            total += pws[i][j]
                    if total != 0:
                        map_i.append(i)
                map_j = [j for j in range(len(scores)) if valid[j] and sum(pws[i][j] for i in range(n_annot)) != 0]
                transpose = len(map_i) > len(map_j)
                rows, cols = (map_j, map_i) if transpose else (map_i, map_j)
                mat = [[pws[c][r] if transpose else pws[r][c] for c in cols] for r in rows]
                assigned = _Problem(mat).solve() if rows else []
                fp, tpc, tpd = float(sum(valid)), 0.0, 0.0
                for r, c in enumerate(assigned):
                    score = mat[r][c]
                    if score > 0:
                        tpc += score
                        if score > 0.5:
                            tpd += 1
                            fp -= 1
                image.append(dict(N=n_annot, thr=t, tpc=tpc, tpd=tpd, fp=fp))
        cum = reference_merge(cum, image)
    disc = "".join(f"{r['tpd'] / r['N']:g} {r['fp']:g} {r['thr']:g}\n" if r["N"] else f"0 0 {r['thr']:g}\n"
                   for r in cum)
    cont = "".join(f"{r['tpc'] / r['N']:g} {r['fp']:g}\n" if r["N"] else "0 0\n" for r in cum)
    return disc, cont


def reference_merge(rv1, rv2):
    """Results::merge, statement by statement."""
    def add(r1, r2):
        out = dict(N=0, tpc=0.0, tpd=0.0, fp=0.0, thr=DBL_MAX)
        for r in (r1, r2):
            for key in ("N", "tpc", "tpd", "fp"):
                out[key] += r[key]
            out["thr"] = min(out["thr"], r["thr"])
        return out

    if not rv1:
        return [dict(r) for r in rv2]
    merged, i1, i2 = [], 0, 0
    n_annot1, n_annot2 = rv1[0]["N"], rv2[0]["N"] if rv2 else 0
    while i1 < len(rv1):
        if i2 < len(rv2):
            merged.append(add(rv1[i1], rv2[i2]))
            s1, s2 = rv1[i1]["thr"], rv2[i2]["thr"]
            i1, i2 = i1 + (s1 <= s2), i2 + (s1 >= s2)
        else:
            merged += [dict(r, N=r["N"] + n_annot2) for r in rv1[i1:]]
            i1 = len(rv1)
    merged += [dict(r, N=r["N"] + n_annot1) for r in rv2[i2:]]
    return merged


def generated(seed, images, box):
    """Random small images: faces inside, detections near them or anywhere (partly or wholly outside),
    scores with one decimal (many ties), duplicates, images without faces or detections."""
    rng = np.random.default_rng(seed)
    annotations, detections, sizes = [], [], []
    for _ in range(images):
        w, h = (int(v) for v in rng.integers(20, 60, 2))
        n = int(rng.integers(0, 4))
        ra = rng.uniform(2, 20, n)
        faces = np.column_stack([ra, ra * rng.uniform(0.5, 1, n), rng.uniform(-3.2, 3.2, n),
                                 rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)])
        rows = []
        for _ in range(int(rng.integers(0, 7))):
            if n and rng.random() < 0.7:
                f = faces[rng.integers(n)]
                c, half = f[3:5] + rng.normal(0, 2, 2), f[[1, 0]] * rng.uniform(0.6, 1.5, 2)
            else:
                c, half = rng.uniform(-10, [w + 10, h + 10]), rng.uniform(0, 12, 2)
            score = round(float(rng.uniform(0, 1)), 1)
            if box == "rect":
                rows.append([*(c - half), *(2 * half), score])
            else:
                rows.append([*half[::-1], rng.uniform(-3, 3), *c, score])
        if rows and rng.random() < 0.3:
            rows.append(list(rows[0]))
        annotations.append(faces)
        detections.append(np.array(rows).reshape(-1, 5 if box == "rect" else 6))
        sizes.append((w, h))
    return annotations, detections, sizes
