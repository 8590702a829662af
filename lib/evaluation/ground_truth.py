"""Ground truth of the official WIDER val evaluation (wider_eval_tools/ground_truth/*.mat).

`wider_face_val.mat` lists the 61 events, their images and int32 `[x y w h]` face boxes;
`wider_{easy,medium,hard}_val.mat` add `gt_list`, per image the 1-based indices of the faces
that count in that setting. The .mat values are used, not the text annotations (they differ:
one box has w = -2 in the .mat and 0 in the text).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

SETTINGS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class GroundTruth:
    """Flattened in the official order (event by event, then image by image).

    events: image's event folder per image; images: image name without extension per image;
    boxes: per image an (M, 4) int64 array of int32 values x, y, w, h;
    keep: setting -> per image the 0-based indices of the faces in that setting.
    """
    events: list
    images: list
    boxes: list
    keep: dict

    def __len__(self):
        return len(self.images)

    def count_face(self, setting):
        """Faces in `setting` over all images (the recall denominator)."""
        return sum(len(k) for k in self.keep[setting])

    def subset(self, names):
        """The ground truth of the images `names` (`<event>/<image>.jpg` as in split files) alone, in the
        official order: what the official evaluation computes when only these images are listed (e.g.
        validation during training on a few images). A name not in the ground truth raises ValueError."""
        wanted = {Path(name).with_suffix("").as_posix() for name in names}
        index = [i for i, key in enumerate(f"{e}/{im}" for e, im in zip(self.events, self.images)) if key in wanted]
        if len(index) != len(wanted):
            known = {f"{e}/{im}" for e, im in zip(self.events, self.images)}
            raise ValueError(f"not in the WIDER val ground truth: {sorted(wanted - known)[0]}.jpg")
        return GroundTruth([self.events[i] for i in index], [self.images[i] for i in index],
                           [self.boxes[i] for i in index], {s: [k[i] for i in index] for s, k in self.keep.items()})


def _load(path, keys):
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, variable_names=keys)
    except (ValueError, NotImplementedError, OSError) as e:
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file: {e}") from e
    missing = [k for k in keys if k not in mat]
    if missing:
        raise ValueError(f"{path}: missing variable(s) {', '.join(missing)}")
    return mat


def _flat(cell):
    """A MATLAB cell array as a flat Python list."""
    return list(np.asarray(cell).ravel())


def _string(cell):
    return str(np.asarray(cell).ravel()[0])


def load_ground_truth(gt_dir):
    """Read `wider_face_val.mat` and the three setting files from the folder `gt_dir`.

    The setting files also carry `file_list` and `face_bbx_list` (which the official
    `evaluation.m` uses); they must equal those of `wider_face_val.mat`, else ValueError.
    """
    gt_dir = Path(gt_dir)
    val_path = gt_dir / "wider_face_val.mat"
    val = _load(val_path, ["event_list", "file_list", "face_bbx_list"])
    events, images, boxes = [], [], []
    for event, files, bbx in zip(_flat(val["event_list"]), _flat(val["file_list"]),
                                 _flat(val["face_bbx_list"])):
        files, bbx = _flat(files), _flat(bbx)
        if len(files) != len(bbx):
            raise ValueError(f"{val_path}: event {_string(event)} has {len(files)} images "
                             f"but {len(bbx)} box lists")
        events += [_string(event)] * len(files)
        images += [_string(f) for f in files]
        boxes += [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in bbx]
    keep = {}
    for setting in SETTINGS:
        path = gt_dir / f"wider_{setting}_val.mat"
        mat = _load(path, ["file_list", "face_bbx_list", "gt_list"])
        names = [_string(f) for files in _flat(mat["file_list"]) for f in _flat(files)]
        bbx = [np.asarray(b, dtype=np.int64).reshape(-1, 4)
               for lst in _flat(mat["face_bbx_list"]) for b in _flat(lst)]
        if names != images or any(not np.array_equal(x, y) for x, y in zip(bbx, boxes)):
            raise ValueError(f"{path}: images or boxes differ from {val_path}")
        lists = [np.asarray(k, dtype=np.int64).ravel() - 1
                 for lst in _flat(mat["gt_list"]) for k in _flat(lst)]
        if len(lists) != len(images):
            raise ValueError(f"{path}: gt_list has {len(lists)} images, expected {len(images)}")
        if any(k.size and k.min() < 0 for k in lists):
            raise ValueError(f"{path}: gt_list holds a face index below 1")
        keep[setting] = lists
    return GroundTruth(events, images, boxes, keep)


def _cells(values):
    """(len, 1) MATLAB cell array (numpy object array) of `values`."""
    cells = np.empty((len(values), 1), dtype=object)
    for i, value in enumerate(values):
        cells[i, 0] = value
    return cells


def save_ground_truth(gt, gt_dir):
    """Write `gt` as the official tool's four .mat files in the folder `gt_dir` (load_ground_truth reads
    them back equal): e.g. the ground truth of a few images (GroundTruth.subset), for eval.py --gt or
    the official MATLAB tool to evaluate those images alone. Events keep their first-seen order."""
    gt_dir = Path(gt_dir)
    gt_dir.mkdir(parents=True, exist_ok=True)
    events = list(dict.fromkeys(gt.events))
    by_event = [[i for i, e in enumerate(gt.events) if e == event] for event in events]
    lists = {
        "event_list": _cells(events),
        "file_list": _cells([_cells([gt.images[i] for i in index]) for index in by_event]),
        "face_bbx_list": _cells([_cells([gt.boxes[i].astype(np.int32) for i in index]) for index in by_event]),
    }
    scipy.io.savemat(gt_dir / "wider_face_val.mat", lists)
    for setting in SETTINGS:
        keep = _cells([_cells([(gt.keep[setting][i] + 1).reshape(-1, 1) for i in index]) for index in by_event])
        scipy.io.savemat(gt_dir / f"wider_{setting}_val.mat", {**lists, "gt_list": keep})
    return gt_dir
