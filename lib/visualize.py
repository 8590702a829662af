"""Drawing detections on an image (the official demo draws boxes with score >= 0.5)."""
import cv2
import numpy as np


def draw_detections(image, dets, thresh=0.5, color=(0, 255, 0)):
    """Copy of BGR `image` with the boxes of `dets` (N, 5) whose score >= thresh and their scores."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 600))
    for x1, y1, x2, y2, score in dets[dets[:, 4] >= thresh]:
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, color, thickness)
        label = f"{score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
        top = max(p1[1], th + base)
        cv2.rectangle(out, (p1[0], top - th - base), (p1[0] + tw, top), color, cv2.FILLED)
        cv2.putText(out, label, (p1[0], top - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


def format_detections(dets):
    """Text with one `x1 y1 x2 y2 score` line per detection."""
    return "".join(f"{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f} {s:.6f}\n" for x1, y1, x2, y2, s in np.asarray(dets))
