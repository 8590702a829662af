"""Uploaded files as a detection run's inputs: each photo copied under its own name into a request's
input folder, the photos of a zip unpacked under the zip's name, a video copied; what cannot be an input
is refused with a sentence naming it.

An input's name in the results (the JSON file's "path", the table) is its path under the input folder:
the upload's own file name, or `<zip name>/<path in the zip>`, as test.py names the same files run from
a folder holding them. Uploads of the same name get " (2)", " (3)", ... before the extension. Whether a
file really is an image or a video is decided where it is read (lib.image_io, lib.video), whose messages
name the file too.
"""
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ..sources import IMAGE_SUFFIXES, image_tree

ZIP_SUFFIX = ".zip"


class UploadError(ValueError):
    """An upload refused as a whole."""


def megabytes(size):
    return f"{size / 1e6:.1f} MB"


def free_path(folder, name):
    """`folder / name`, or `folder / "<stem> (k)<suffix>"` with the first k >= 2 that is not taken."""
    path = Path(folder) / name
    k = 2
    while path.exists():
        path = Path(folder) / f"{Path(name).stem} ({k}){Path(name).suffix}"
        k += 1
    return path


def check_size(upload, max_bytes):
    """UploadError when the file `upload` is missing or larger than `max_bytes`."""
    upload = Path(upload)
    if not upload.is_file():
        raise UploadError(f"{upload.name}: the upload did not arrive (try again)")
    size = upload.stat().st_size
    if size > max_bytes:
        raise UploadError(f"{upload.name}: {megabytes(size)} is more than the limit of {megabytes(max_bytes)} per file")


def _zip_members(archive, name):
    """The image members of the open ZipFile `archive` that unpack safely: regular files with an image
    extension, no absolute or `..` path, nothing hidden (`.name`, `__MACOSX`)."""
    members = []
    for info in archive.infolist():
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        unsafe = not parts or info.filename.startswith("/") or ".." in parts or ":" in parts[0]
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
        if info.is_dir() or unsafe or hidden or PurePosixPath(*parts).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if info.flag_bits & 0x1:
            raise UploadError(f"{name}: the zip is encrypted")
        members.append((info, PurePosixPath(*parts)))
    return members


def unpack_zip(upload, folder, max_bytes):
    """Unpack the images of the zip `upload` into `folder / <zip stem>` (made free); their paths, sorted.
    Refused (UploadError): not a zip, no image in it, images that unpack to more than `max_bytes`."""
    upload = Path(upload)
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError):
        raise UploadError(f"{upload.name}: not a zip file that can be read (damaged, or not a zip)") from None
    with archive:
        members = _zip_members(archive, upload.name)
        if not members:
            raise UploadError(f"{upload.name}: no image ({', '.join(sorted(IMAGE_SUFFIXES))}) in the zip")
        announced = sum(info.file_size for info, _ in members)
        if announced > max_bytes:
            raise UploadError(f"{upload.name}: its images unpack to {megabytes(announced)}, more than the limit of "
                              f"{megabytes(max_bytes)}")
        root = free_path(folder, upload.stem)
        try:
            for info, rel in members:
                target = root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)  # zipfile reads no more than the size checked above
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as e:
            raise UploadError(f"{upload.name}: the zip is damaged ({e})") from None
    return image_tree(root)


def photo_inputs(uploads, folder, limits):
    """The image files for the uploads (paths of Gradio's files, named as uploaded) in `folder`, in upload
    order (a zip's images sorted by path), and a sentence for each upload refused or left out.

    A photo is copied as it is (its content is checked when it is read); a zip's images are unpacked;
    anything else is refused, as is any file larger than the upload limit. Images past
    `limits.max_images` are left out."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs, problems = [], []
    for upload in map(Path, uploads):
        try:
            check_size(upload, limits.max_upload_bytes)
            suffix = upload.suffix.lower()
            if suffix == ZIP_SUFFIX:
                inputs += unpack_zip(upload, folder, limits.max_upload_bytes)
            elif suffix in IMAGE_SUFFIXES:
                inputs.append(Path(shutil.copyfile(upload, free_path(folder, upload.name))))
            else:
                raise UploadError(f"{upload.name}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                                  "nor a .zip of images")
        except UploadError as e:
            problems.append(str(e))
    if len(inputs) > limits.max_images:
        problems.append(f"{len(inputs) - limits.max_images} of {len(inputs)} images left out: at most "
                        f"{limits.max_images} images per request")
        inputs = inputs[:limits.max_images]
    return inputs, problems


def video_input(upload, folder, limits):
    """The video `upload` copied into `folder` under its name; UploadError when it is larger than the limit."""
    upload = Path(upload)
    check_size(upload, limits.max_upload_bytes)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(upload, free_path(folder, upload.name)))
