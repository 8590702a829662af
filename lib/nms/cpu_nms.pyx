# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Greedy NMS on the CPU; suppresses a box when IoU > thresh in float32 (official GPU kernel rule).

Boxes arrive with x2, y2 already shifted by +1 (lib/nms/__init__.py), so the arithmetic is the
same as torchvision.ops.nms and both paths keep identical boxes.
"""
import numpy as np
cimport numpy as cnp


def nms_sorted(const float[:, ::1] boxes, float thresh):
    """Indices kept by greedy NMS of +1-shifted `boxes` (N, 4), sorted by descending score."""
    cdef Py_ssize_t n = boxes.shape[0], i, j, nkeep = 0
    cdef float ix1, iy1, ix2, iy2, iarea, w, h, inter
    cdef cnp.ndarray[cnp.float32_t, ndim=1] areas = np.empty(n, dtype=np.float32)
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] removed = np.zeros(n, dtype=np.uint8)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] keep = np.empty(n, dtype=np.int64)
    for i in range(n):
        areas[i] = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
    with nogil:
        for i in range(n):
            if removed[i]:
                continue
            keep[nkeep] = i
            nkeep += 1
            ix1 = boxes[i, 0]
            iy1 = boxes[i, 1]
            ix2 = boxes[i, 2]
            iy2 = boxes[i, 3]
            iarea = areas[i]
            for j in range(i + 1, n):
                if removed[j]:
                    continue
                w = min(ix2, boxes[j, 2]) - max(ix1, boxes[j, 0])
                if w <= 0:
                    continue
                h = min(iy2, boxes[j, 3]) - max(iy1, boxes[j, 1])
                if h <= 0:
                    continue
                inter = w * h
                if inter / (iarea + areas[j] - inter) > thresh:
                    removed[j] = 1
    return keep[:nkeep]
