"""What a detection run reads: image files, folder trees and WIDER splits as lists of `Item`s with stable
keys and output names (docs/inference.md §5.6). Video files, frame folders, cameras and streams are read
frame by frame by lib.video.FrameReader, keyed by frame index.

An item's key is its path: it fixes the order of the outputs (the JSON file's included), and its output
name stem is unique in the whole run, whichever process of a torchrun job writes it.
"""
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .image_io import ImageError

# Extensions of the image files that folders are searched for.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Item:
    """One input image: `path` its file (its key: order and JSON entry), `stem` its output name stem
    (unique in the job), `rel` its name in WIDER prediction files."""
    path: Path
    stem: str
    rel: str


def image_tree(folder, skip=None):
    """Image files under `folder` and its subfolders (hidden ones and `skip` excluded), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} is not a folder")
    skip = Path(skip).resolve() if skip is not None else None
    found = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        skipped = skip is not None and path.resolve().is_relative_to(skip)
        if not hidden and not skipped and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return found


def output_stems(paths):
    """Output name stem of each input path, unique in the run (case-insensitively).

    An image keeps its stem unless another input has the same one (a.jpg and a.png give a_jpg and
    a_png); names that still collide (one name in two folders) get _2, _3, ... in input order.
    """
    shared = Counter(p.stem.casefold() for p in paths)
    stems = [f"{p.stem}_{p.suffix.lstrip('.')}" if shared[p.stem.casefold()] > 1 else p.stem for p in paths]
    seen = Counter()
    unique = []
    for stem in stems:
        seen[stem.casefold()] += 1
        unique.append(stem if seen[stem.casefold()] == 1 else f"{stem}_{seen[stem.casefold()]}")
    return unique


def image_items(files=(), folder=None, skip=None):
    """Items of the image `files` (WIDER name: the file name) and then of every image under `folder`
    (WIDER name: the path under it; `skip`, e.g. the output folder, left out), each file once. A folder
    without images raises ImageError."""
    named = {Path(path): Path(path).name for path in files}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise ImageError(f"--dir {folder} is not a folder")
        found = image_tree(folder, skip=skip)
        if not found:
            raise ImageError(f"--dir {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                             "in it or its subfolders")
        for path in found:
            named.setdefault(path, path.relative_to(folder).as_posix())
    return [Item(path, stem, rel) for (path, rel), stem in zip(named.items(), output_stems(list(named)))]


def split_items(image_names, image_root):
    """Items of a WIDER split's images, named `<event>/<image>.jpg` under `image_root` (split-file order)."""
    return [Item(Path(image_root) / name, Path(name).stem, name) for name in image_names]
