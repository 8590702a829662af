"""Average precision of wider_eval_tools/plot/VOCap.m (PASCAL VOC devkit)."""
import numpy as np


def voc_ap(rec, prec):
    """Area under the PR curve with sentinels, precision made monotone from the right.

    MATLAB's `max` ignores NaN, so a NaN precision (0/0 at high thresholds) takes the value on
    its right (np.fmax). The sum runs left to right, as MATLAB/Octave `sum` does.
    """
    mrec = np.concatenate([[0.0], np.asarray(rec, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(prec, dtype=np.float64), [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    terms = (mrec[i] - mrec[i - 1]) * mpre[i]
    return float(np.cumsum(terms)[-1])
