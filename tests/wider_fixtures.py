"""Tiny WIDER-layout training sets written by the tests themselves."""
import cv2
import numpy as np


def tiny_wider(root, count, seed, x0, dx, y0):
    """`root` with `count` random 64x80 images under WIDER_train/images/0--Test and one face box
    `x0 + dx * i, y0, 24, 28` each in wider_face_split/wider_face_train_bbx_gt.txt; returns root."""
    images = root / "WIDER_train" / "images" / "0--Test"
    images.mkdir(parents=True)
    (root / "wider_face_split").mkdir()
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        cv2.imwrite(str(images / f"img{i}.jpg"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
        lines += [f"0--Test/img{i}.jpg", "1", f"{x0 + dx * i} {y0} 24 28 0 0 0 0 0 0 "]
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root
