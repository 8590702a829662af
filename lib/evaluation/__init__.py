"""WIDER FACE val evaluation identical to the official MATLAB tool (lib/wider_eval_tools), and the
writer of its per-image prediction files. One module per official function:
read_pred.m -> read_pred, norm_score.m -> norm_score, evaluation.m -> evaluation,
boxoverlap.m -> boxoverlap, plot/VOCap.m -> voc_ap, wider_eval.m -> wider_eval, plot/wider_plot.m -> plot.

FDDB evaluation identical to the official C++ tool (evaluation.tgz of the FDDB site): fddb_io (its
files), fddb_regions (EllipseR / RectangleR drawing, Region overlap), hungarian (Hungarian.cpp),
fddb (Matching, Results, evaluate.cpp), fddb_plot (the ROC figures).
"""
from .fddb import evaluate_fddb, evaluate_fddb_files, fddb_summary
from .fddb_io import read_image_list, write_detections, write_roc
from .ground_truth import SETTINGS, GroundTruth, load_ground_truth
from .read_pred import PredictionWarning, read_pred
from .wider_eval import wider_eval
from .wider_txt import write_image_detections

__all__ = ["SETTINGS", "GroundTruth", "PredictionWarning", "evaluate_fddb", "evaluate_fddb_files", "fddb_summary",
           "load_ground_truth", "read_image_list", "read_pred", "wider_eval", "write_detections",
           "write_image_detections", "write_roc"]
