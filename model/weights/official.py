"""Official weight files: where they live under data/, where the official scripts download them,
and a check that what was unpacked really loads.

    python3 -m model.weights ssh        # data/SSH_models/SSH.caffemodel (trained SSH)
    python3 -m model.weights imagenet   # data/imagenet_models/VGG16.caffemodel (ImageNet init)
"""
import argparse
import sys
from pathlib import Path

from lib.utils.download import DownloadError, fetch_archive

from ..ssh import SSH

# name -> (file under data/, archive, its URL in the official download scripts, strict load)
OFFICIAL = {
    "ssh": ("SSH_models/SSH.caffemodel", "SSH_models.tar.gz", "https://bit.ly/3j6ofwl", True),
    "imagenet": ("imagenet_models/VGG16.caffemodel", "imagenet_models.tar.gz", "https://bit.ly/3DakVbi", False),
}


def ensure_weights(name, data_dir="data", url=None, timeout=60):
    """Path of the official `name` weights, downloading and unpacking the archive when absent.

    The file is verified by loading it into SSH (strictly for the trained model).
    Raises DownloadError with instructions when it cannot be fetched or does not load.
    """
    rel, archive, default_url, strict = OFFICIAL[name]
    path = Path(data_dir) / rel
    if not path.is_file():
        url = url or default_url
        print(f"{path} not found: downloading {url} ...", flush=True)
        try:
            fetch_archive(url, data_dir, timeout)
        except DownloadError as e:
            raise DownloadError(
                f"{e}. Without network access, download {archive} ({default_url}) elsewhere, unpack it into "
                f"{data_dir}/ so that {path} exists, and run again.") from e
        if not path.is_file():
            raise DownloadError(f"the archive from {url} did not contain {rel}")
    try:
        report = SSH().load_caffemodel(path, strict=strict)
    except ValueError as e:
        raise DownloadError(f"{path} does not load: {e}") from e
    print(f"{path}: {report}", flush=True)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m model.weights", description="Fetch and verify the official SSH weight files.")
    parser.add_argument("name", choices=sorted(OFFICIAL))
    parser.add_argument("--data", default="data", help="data folder (default: data)")
    parser.add_argument("--url", help="archive URL (default: the official one)")
    args = parser.parse_args(argv)
    try:
        ensure_weights(args.name, args.data, args.url)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
