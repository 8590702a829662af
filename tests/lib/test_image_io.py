"""lib/image_io.py: images read as the official cv2.imread reads them (EXIF orientation applied),
truncated JPEGs reported, header sizes that agree with the decoded image, errors naming the file,
images over the pixel limit (decompression bombs) refused from their header."""
import inspect
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from lib.image_io import DEFAULT_MAX_PIXELS, ImageError, ImageWarning, image_size, jpeg_truncated, read_image

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


def test_truncated_jpeg_is_decoded_with_a_warning_naming_it(tmp_path, capfd):
    data = jpeg_bytes(stored_pixels(shape=(64, 64, 3)))
    (tmp_path / "half.jpg").write_bytes(data[:len(data) // 2])
    with pytest.warns(ImageWarning, match=r"half\.jpg: truncated JPEG"):
        image = read_image(tmp_path / "half.jpg")
    assert image.shape == (64, 64, 3)
    assert capfd.readouterr().err == ""  # libjpeg's "Premature end of JPEG file" is not printed beside it
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


def png_header_only(width, height, rows=2):
    """A PNG whose header says width x height RGB but whose data holds only `rows` rows: a small
    file that a decoder would allocate width x height x 3 bytes for (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = (b"\x00" + bytes(width * 3)) * rows
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    """A 20000 x 20000 PNG (400 MP; 1.2 GB decoded, 4.8 GB as a float32 blob input) is refused by the
    default limit in one sentence naming the file, its size, the limit and how to raise it, and
    OpenCV is never asked to decode it."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    assert path.stat().st_size < 2000

    def no_decoding(*args):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # nor by Pillow reading the header
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 20000 x 20000 pixels (400,000,000) is more than the limit of "
                              "178,956,970 pixels")
    assert "--max-pixels N" in message and "read_image(path, max_pixels=N)" in message
    assert "0 or None: no limit" in message and message.count(". ") == 0


def test_default_limit_is_pillows_decompression_bomb_error_threshold():
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS == 178_956_970
    assert inspect.signature(read_image).parameters["max_pixels"].default == DEFAULT_MAX_PIXELS


def test_max_pixels_counts_the_stored_pixels_and_0_or_none_lifts_it(tmp_path):
    """A 32 x 48 photo stored sideways (1536 pixels; 48 x 32 as read, the size the message gives) is
    read up to a limit of 1536 and refused at 1535; 0 and None lift the limit (OpenCV then decides)."""
    path = save_with_orientation(tmp_path / "photo.jpg", stored_pixels(), 6)
    assert read_image(path, max_pixels=1536).shape == (32, 48, 3)
    with pytest.raises(ImageError, match=r"photo\.jpg: 48 x 32 pixels \(1,536\) is more than the limit of 1,535"):
        read_image(path, max_pixels=1535)
    for no_limit in (0, None, np.int64(0)):
        assert read_image(path, max_pixels=no_limit).shape == (32, 48, 3)
    assert read_image(path, max_pixels=np.int64(1536)).shape == (32, 48, 3)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    with pytest.raises(ImageError, match="not an image OpenCV can decode"):  # only 2 of its rows exist
        read_image(bomb, max_pixels=None)


@pytest.mark.parametrize("bad", [-1, 1.5, "100", True, [100]])
def test_max_pixels_must_be_a_whole_number(tmp_path, bad):
    path = save_with_orientation(tmp_path / "photo.jpg", stored_pixels(), 1)
    with pytest.raises(ValueError, match="max_pixels must be a whole number of pixels, or 0 or None"):
        read_image(path, max_pixels=bad)


def test_limit_is_checked_after_decoding_where_pillow_reads_no_header(tmp_path):
    """Radiance HDR: OpenCV decodes it, Pillow cannot open it, so the size is known only decoded."""
    path = tmp_path / "light.hdr"
    assert cv2.imwrite(str(path), np.ones((10, 20, 3), np.float32))
    with pytest.raises(Exception):
        Image.open(path)
    assert read_image(path).shape == (10, 20, 3)
    with pytest.raises(ImageError, match=r"light\.hdr: 20 x 10 pixels \(200\) is more than the limit of 199 pixels"):
        read_image(path, max_pixels=199)


def test_png_exif_after_the_pixels_counts_and_the_header_read_decodes_nothing(tmp_path, monkeypatch):
    """An eXIf chunk after IDAT (allowed by the PNG spec; Pillow's getexif() would decode the whole
    picture to find it) is found by walking the chunks: the header size is transposed as OpenCV
    rotates the picture, and Pillow decodes nothing (nor for a PNG without EXIF)."""
    stored = stored_pixels(shape=(2, 4, 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    plain = tmp_path / "plain.png"
    assert cv2.imwrite(str(plain), stored)
    data = plain.read_bytes()
    iend = data.rindex(b"IEND") - 4
    payload = exif.tobytes()[6:]  # raw TIFF data, without the JPEG "Exif\0\0" prefix
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    after = tmp_path / "after.png"
    after.write_bytes(data[:iend] + chunk + data[iend:])
    assert cv2.imread(str(after)).shape == (4, 2, 3)  # OpenCV applies it

    def no_decoding(*args):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_size(after) == (2, 4) and image_size(plain) == (4, 2)
    np.testing.assert_array_equal(read_image(after), DISPLAY[6](stored))
