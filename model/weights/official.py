"""Official weight files: where they live under DATA_DIR, where the official scripts download them,
and a check that what was unpacked really loads, recorded beside the file (lib/utils/integrity.py)
so that later uses check its size and SHA-256 instead of loading it again.

    python3 -m model.weights ssh        # <DATA_DIR>/SSH_models/SSH.caffemodel (trained SSH)
    python3 -m model.weights imagenet   # <DATA_DIR>/imagenet_models/VGG16.caffemodel (ImageNet init)
"""
from pathlib import Path

from lib.config import default_data_dir
from lib.utils.download import BACKOFF, RETRIES, DownloadError, fetch_archive, unpack_file
from lib.utils.integrity import check_record, read_record, record_path, write_record

from ..ssh import SSH

# name -> (file under DATA_DIR, archive, its URL in the official download scripts, strict load)
OFFICIAL = {
    "ssh": ("SSH_models/SSH.caffemodel", "SSH_models.tar.gz", "https://bit.ly/3j6ofwl", True),
    "imagenet": ("imagenet_models/VGG16.caffemodel", "imagenet_models.tar.gz", "https://bit.ly/3DakVbi", False),
}


def fetch_command(name, data_dir, url=None):
    """The `python3 -m model.weights` command that fetches `name` into `data_dir`."""
    return f"python3 -m model.weights {name} --data {data_dir}{f' --url {url}' if url else ''}"


def ensure_weights(name, data_dir=None, url=None, timeout=60, sha256=None, archive=None,
                   retries=RETRIES, backoff=BACKOFF, verbose=False):
    """Path of the official `name` weights under `data_dir` (default: `default_data_dir()`).

    A file with an integrity record is checked against it (IntegrityError on a mismatch). Otherwise
    the archive is unpacked from `archive` (a .tar.gz downloaded elsewhere) or, when the file is
    absent, downloaded from `url` (default: the official one; resumable, see lib/utils/download.py);
    `sha256` is the archive's expected hash. The file is then verified by loading it into SSH
    (strictly for the trained model), gets its record, and one line says so. verbose: also say
    when the file was already installed and verified. Raises DownloadError saying what to do.
    """
    rel, archive_name, default_url, strict = OFFICIAL[name]
    data_dir = Path(data_dir if data_dir is not None else default_data_dir())
    path = data_dir / rel
    rerun = f"`{fetch_command(name, data_dir, url)}`"
    if archive is not None:
        unpack_file(archive, data_dir, sha256)
        if not path.is_file():
            raise DownloadError(f"the archive {archive} did not contain {rel}: is it {archive_name}?")
    elif path.is_file() and (record := check_record(path)) is not None:
        if verbose:
            print(f"{path}: already installed and verified (size and SHA-256 {short_hash(record['sha256'])} "
                  f"match {record_path(path)})", flush=True)
        return path
    elif not path.is_file():
        url = url or default_url
        print(f"{path} not found: downloading {url} ...", flush=True)
        try:
            fetch_archive(url, data_dir, archive_name, sha256, timeout, retries, backoff, rerun)
        except DownloadError as e:
            raise DownloadError(f"{e}. {offline_advice(name, data_dir, url)}") from e
        if not path.is_file():
            raise DownloadError(f"the archive from {url} did not contain {rel}")
    net = SSH()
    try:
        report = net.load_caffemodel(path, strict=strict)
    except ValueError as e:
        raise DownloadError(f"{path} does not load: {e}; delete it and run {rerun}") from e
    how = "strict load into SSH" if strict else "load of the VGG16 layers into SSH"
    write_record(path, verified_by=f"{how} (model.weights.official.ensure_weights)",
                 remake=fetch_command(name, data_dir, url))
    tensors = sum(len(list(layer.parameters())) for spec, layer in net.caffe_layers()
                  if spec.caffe_name in report.loaded)
    skipped = f", {len(report.skipped)} layers of the file not used" if report.skipped else ""
    print(f"{path}: installed and verified ({how}: {len(report.loaded)} layers, {tensors} tensors{skipped}; "
          f"SHA-256 {short_hash(read_record(path)['sha256'])})", flush=True)
    return path


def short_hash(sha256):
    """The first 12 hex digits of a SHA-256, for messages (the record holds all 64)."""
    return f"{sha256[:12]}…"


def offline_advice(name, data_dir, url):
    """How to install the `name` weights into `data_dir` on a machine without network access."""
    rel, archive_name, _, _ = OFFICIAL[name]
    return (f"Without network access here: on a machine that has it, download {url} (the file is {archive_name}), "
            f"copy that file to this machine, e.g. into the current folder, and run "
            f"`python3 -m model.weights {name} --data {data_dir} --archive {archive_name}`, which unpacks, verifies "
            f"and records {data_dir / rel}")
