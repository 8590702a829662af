"""Global score normalisation of wider_eval_tools/norm_score.m, in float32 like MATLAB.

The running max starts at realmin('single') and the min at realmax('single'); MATLAB's
max(single, double) is single, so both are float32 and every `(s - min) / (max - min)` is
computed in float32 (then stored back into the double prediction matrix). Consequences kept
here: if every score is <= 0 the max stays ~1.2e-38 and the top score maps below 1; if all
scores are equal, every normalised score is NaN. max/min ignore NaN scores, as MATLAB does.
"""
import numpy as np

REALMIN_SINGLE = np.finfo(np.float32).tiny
REALMAX_SINGLE = np.finfo(np.float32).max


def norm_score(pred_list):
    """Copies of the (N, 5) prediction arrays with column 4 normalised over the whole list.

    A score beyond the float32 range becomes +-Inf, as in MATLAB `single`, without a RuntimeWarning
    (read_pred leaves such rows out).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scores = np.concatenate([p[:, 4] for p in pred_list] + [np.zeros(0)]).astype(np.float32)
        top = np.fmax(REALMIN_SINGLE, np.fmax.reduce(scores, initial=-np.inf))
        low = np.fmin(REALMAX_SINGLE, np.fmin.reduce(scores, initial=np.inf))
        top, low = np.float32(top), np.float32(low)
        out = []
        for p in pred_list:
            q = p.copy()
            q[:, 4] = (p[:, 4].astype(np.float32) - low) / (top - low)
            out.append(q)
    return out
