"""lib/webapp/uploads.py: uploads as a run's input files, and what is refused."""
import zipfile

import cv2
import numpy as np
import pytest

from lib.webapp.limits import Limits
from lib.webapp.uploads import UploadError, free_path, photo_inputs, unpack_zip, video_input


def picture(path, seed=0):
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (8, 8, 3), np.uint8))
    return path


@pytest.fixture
def uploads(tmp_path):
    """Gradio keeps each upload in a folder of its own, under the name it was uploaded with."""
    folders = iter(range(1000))

    def upload(name, data):
        path = tmp_path / "gradio" / str(next(folders)) / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return path
    return upload


def test_photos_keep_their_names_and_clashes_get_numbers(tmp_path, uploads):
    a = picture(tmp_path / "a.jpg").read_bytes()
    files = [uploads("a.jpg", a), uploads("a.jpg", a), uploads("b.png", b"png?")]
    inputs, problems = photo_inputs(files, tmp_path / "in", Limits())
    assert [p.relative_to(tmp_path / "in").as_posix() for p in inputs] == ["a.jpg", "a (2).jpg", "b.png"]
    assert problems == [] and inputs[1].read_bytes() == a


def test_zip_images_unpack_under_the_zip_name_and_nothing_else_does(tmp_path, uploads):
    data = picture(tmp_path / "x.jpg").read_bytes()
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("day1/b.jpg", "a.JPG", "../evil.jpg", "/abs.jpg", "__MACOSX/day1/._b.jpg", ".hidden/c.jpg",
                     "notes.txt", "day1/"):
            z.writestr(name, data if name.lower().endswith(".jpg") else "text")
    inputs, problems = photo_inputs([uploads("holiday.zip", archive.read_bytes())], tmp_path / "in", Limits())
    assert [p.relative_to(tmp_path / "in").as_posix() for p in inputs] == ["holiday/a.JPG", "holiday/day1/b.jpg"]
    assert problems == []
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*") if p.is_file()) == \
        ["holiday/a.JPG", "holiday/day1/b.jpg"]


def test_zip_that_unpacks_past_the_limit_is_refused_even_when_its_sizes_lie(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.jpg", b"\0" * 3_000_000)
    with pytest.raises(UploadError, match=r"bomb.zip: its images unpack to 3.0 MB, more than the limit of 1.0 MB"):
        unpack_zip(archive, tmp_path / "in", 1_000_000)
    # a directory that says 10 bytes: no more than that is unpacked, and the member fails its CRC
    raw = bytearray(archive.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(UploadError, match=r"bomb.zip: the zip is damaged \(Bad CRC-32 for file 'a.jpg'\)"):
        unpack_zip(archive, tmp_path / "in2", 1_000_000)
    assert all(p.stat().st_size <= 10 for p in (tmp_path / "in2").rglob("*") if p.is_file())


def test_refusals_name_the_upload_and_the_rest_goes_on(tmp_path, uploads):
    good = picture(tmp_path / "g.jpg").read_bytes()
    files = [uploads("notes.txt", b"hi"), uploads("big.jpg", b"x" * 2_000_001), uploads("broken.zip", b"PK\3\4 no"),
             uploads("ok.jpg", good)]
    inputs, problems = photo_inputs(files, tmp_path / "in", Limits(max_upload_mb=2))
    assert [p.name for p in inputs] == ["ok.jpg"]
    assert problems == [
        "notes.txt: not an image (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) nor a .zip of images",
        "big.jpg: 2.0 MB is more than the limit of 2.0 MB per file",
        "broken.zip: not a zip file that can be read (damaged, or not a zip)"]


def test_images_past_the_request_limit_are_left_out(tmp_path, uploads):
    files = [uploads(f"{k}.jpg", b"?") for k in range(5)]
    inputs, problems = photo_inputs(files, tmp_path / "in", Limits(max_images=3))
    assert [p.name for p in inputs] == ["0.jpg", "1.jpg", "2.jpg"]
    assert problems == ["2 of 5 images left out: at most 3 images per request"]


def test_video_is_copied_or_refused_by_size(tmp_path, uploads):
    clip = uploads("clip.mp4", b"v" * 100)
    assert video_input(clip, tmp_path / "in", Limits()).read_bytes() == b"v" * 100
    with pytest.raises(UploadError, match="clip.mp4: 0.0 MB is more than the limit of 0.0 MB per file"):
        video_input(clip, tmp_path / "in", Limits(max_upload_mb=1e-5))


def test_free_path(tmp_path):
    (tmp_path / "a.jpg").touch()
    (tmp_path / "a (2).jpg").touch()
    assert free_path(tmp_path, "a.jpg").name == "a (3).jpg" and free_path(tmp_path, "b").name == "b"
