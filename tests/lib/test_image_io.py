"""lib/image_io.py: images read as the official cv2.imread reads them (EXIF orientation applied),
truncated JPEGs reported, header sizes that agree with the decoded image, errors naming the file."""
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from lib.image_io import ImageError, ImageWarning, image_size, jpeg_truncated, read_image

# EXIF orientation -> how the stored pixels are turned for display (numpy, stored H x W first).
DISPLAY = {
    1: lambda a: a,
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),   # stored turned 90 degrees counter-clockwise: turn it back clockwise
    8: lambda a: np.rot90(a, 1),
}


def stored_pixels(seed=0, shape=(48, 32, 3)):
    """An upright-distinguishable picture: noise with a white top-left corner block."""
    image = np.random.default_rng(seed).integers(0, 200, shape, dtype=np.uint8)
    image[:8, :4] = 255
    return image


def save_with_orientation(path, bgr, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(bgr[:, :, ::-1]).save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("orientation", sorted(DISPLAY))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_as_cv2_imread_does(tmp_path, orientation, suffix):
    """A phone photo stored sideways is read upright: the stored pixels turned as EXIF says,
    identical to the official demo's cv2.imread(path), with a header size that agrees."""
    path = save_with_orientation(tmp_path / f"photo{suffix}", stored_pixels(), orientation)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # the pixels as stored, no orientation
    assert stored.shape == (48, 32, 3)
    image = read_image(path)
    np.testing.assert_array_equal(image, DISPLAY[orientation](stored))
    np.testing.assert_array_equal(image, cv2.imread(str(path)))
    assert image_size(path) == (image.shape[1], image.shape[0])
    assert image_size(path) == ((48, 32) if orientation in (6, 8) else (32, 48))


def test_grey_bgra_and_16_bit_images_become_bgr_like_cv2_imread(tmp_path):
    bgr = stored_pixels()
    cv2.imwrite(str(tmp_path / "grey.png"), bgr[:, :, 1])
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(bgr[:, :, 1:2], 3, axis=2))
    cv2.imwrite(str(tmp_path / "bgra.png"), np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)]))
    np.testing.assert_array_equal(read_image(tmp_path / "bgra.png"), bgr)  # alpha dropped
    deep = np.random.default_rng(1).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), (deep >> 8).astype(np.uint8))


def jpeg_bytes(bgr, **kwargs):
    ok, data = cv2.imencode(".jpg", bgr)
    assert ok
    return data.tobytes()


def test_truncated_jpeg_is_decoded_with_a_warning_naming_it(tmp_path):
    data = jpeg_bytes(stored_pixels(shape=(64, 64, 3)))
    (tmp_path / "half.jpg").write_bytes(data[:len(data) // 2])
    with pytest.warns(ImageWarning, match=r"half\.jpg: truncated JPEG"):
        image = read_image(tmp_path / "half.jpg")
    assert image.shape == (64, 64, 3)
    (tmp_path / "whole.jpg").write_bytes(data + b"trailing bytes after the end marker")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "whole.jpg")


def test_jpeg_truncated_skips_the_header_segments():
    data = jpeg_bytes(stored_pixels())
    assert data[-2:] == b"\xff\xd9" and not jpeg_truncated(data)
    # An APP segment holding an end marker of its own (an EXIF thumbnail does) does not count.
    app = b"\xff\xe1" + (2 + 4).to_bytes(2, "big") + b"\xff\xd9\xff\xd9"
    with_thumbnail = data[:2] + app + data[2:]
    assert not jpeg_truncated(with_thumbnail)
    assert jpeg_truncated(with_thumbnail[:-2])
    assert jpeg_truncated(data[:40])  # ends inside the header
    assert not jpeg_truncated(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("content, message", [
    (None, "image not found"),
    (b"", "empty file"),
    (b"plain text, not an image", "not an image OpenCV can decode"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "not an image OpenCV can decode"),
])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert "bad.jpg" in str(info.value)


def test_image_size_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="image not found: .*nope.jpg"):
        image_size(tmp_path / "nope.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="text.jpg: cannot read the image header"):
        image_size(tmp_path / "text.jpg")
