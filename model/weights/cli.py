"""`python3 -m model.weights`: fetch and verify an official weight file, or convert one to .pth.

    python3 -m model.weights ssh                            # download, unpack, verify, record
    python3 -m model.weights ssh --archive SSH_models.tar.gz # unpack an archive fetched elsewhere
    python3 -m model.weights imagenet --data D --url U
    python3 -m model.weights convert                        # SSH.caffemodel -> SSH.pth beside it
"""
import argparse
import re
import sys
from pathlib import Path

from lib.config import data_layout, default_data_dir
from lib.utils.download import DownloadError
from lib.utils.integrity import IntegrityError

from .convert import convert
from .official import OFFICIAL, ensure_weights


def sha256_arg(text):
    """argparse type of --sha256: 64 hex digits, returned lower-case."""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 (64 hex digits)")
    return text.lower()


def parse_args(argv):
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", type=Path, default=None,
                      help="data folder (default: $SSH_DATA_DIR when set, else data)")
    parser = argparse.ArgumentParser(prog="python3 -m model.weights",
                                     description="Fetch and verify the official SSH weight files, or convert one.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{ssh,imagenet,convert}")
    for name, (rel, archive, url, _) in sorted(OFFICIAL.items()):
        fetch = commands.add_parser(name, parents=[data], help=f"fetch <data>/{rel} ({archive})")
        source = fetch.add_mutually_exclusive_group()
        source.add_argument("--url", help=f"archive URL (default: the official {url})")
        source.add_argument("--archive", type=Path, metavar="PATH",
                            help=f"unpack {archive} downloaded elsewhere instead of downloading it")
        fetch.add_argument("--sha256", type=sha256_arg, metavar="HEX", help="expected SHA-256 of the archive")
    conv = commands.add_parser("convert", parents=[data], help="write a .caffemodel's weights as a .pth state_dict")
    conv.add_argument("--model", type=Path, help="weights to convert (default: <data>/SSH_models/SSH.caffemodel)")
    conv.add_argument("--out", type=Path, help="the .pth to write (default: --model with the suffix .pth)")
    args = parser.parse_args(argv)
    args.data = args.data if args.data is not None else Path(default_data_dir())
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.command == "convert":
            model = args.model or data_layout(args.data).ssh_model
            out = args.out or model.with_suffix(".pth")
            remake = f"python3 -m model.weights convert --model {model} --out {out}"
            print(f"{model} -> {convert(model, out, remake)} (plain state_dict, bit-identical, recorded)")
        else:
            ensure_weights(args.command, args.data, args.url, sha256=args.sha256, archive=args.archive,
                           verbose=True)
    except FileNotFoundError as e:
        print(f"error: {e}; fetch the official model with `python3 -m model.weights ssh --data {args.data}` "
              "or name the weights with --model", file=sys.stderr)
        return 2
    except (DownloadError, IntegrityError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
