"""A web page for finding and anonymising faces in photos and videos (Gradio), on test.py's pipeline.

    python3 app.py                                    # official weights, http://127.0.0.1:7860
    python3 app.py --model ssh.pth --device cuda --port 8080
    python3 app.py --host 0.0.0.0 --auth alice:s3cret # other machines too: see README "Web app"

The model loads once, with test.py's --model, --backend, --device, --precision and --cfg/--set. Uploads
and results live in one temporary folder, removed when the server stops (Ctrl-C or SIGTERM).
"""
import os
import signal
import sys

from lib.config import add_config_args, config_from_args, data_layout
from lib.utils.cli import ArgumentParser, one_line_warnings, sigterm_as_ctrl_c
from lib.utils.exit_codes import ExitCode
from lib.webapp.limits import add_limit_args, limits_from_args
from lib.webapp.serving import add_serving_args, exposure_warning
from lib.webapp.workspace import temporary_workspace
from model.detector import build_detector
from model.options import add_model_args, check_model_args, model_error_text
from model.precision import resolve_precision, warn_if_emulated


def parse_args(argv):
    parser = ArgumentParser(description="Serve a web page that detects and anonymises faces with SSH.")
    add_serving_args(parser)
    add_model_args(parser)
    add_limit_args(parser)
    add_config_args(parser)
    args = parser.parse_args(argv)
    check_model_args(parser, args)
    return args


def load_detector(args):
    """The detector of the model options, as test.py builds it (args.model set to the file used)."""
    cfg = config_from_args(args)
    choice = resolve_precision(args.precision, args.device, args.model, data_layout(cfg.DATA_DIR), args.backend)
    args.precision, args.model = choice.precision, choice.model
    if choice.message:
        print(choice.message, file=sys.stderr)
    warn_if_emulated(args.precision, choice.device)
    return build_detector(args.model, cfg, choice.device, args.precision, backend=args.backend)


def serve(args, detector):
    """Serve the page until Ctrl-C or SIGTERM; the temporary folder goes with it."""
    limits = limits_from_args(args)
    with temporary_workspace(limits.keep_seconds) as workspace:
        os.environ["GRADIO_TEMP_DIR"] = str(workspace.gradio)  # read by Gradio as it is imported
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        os.environ["MPLCONFIGDIR"] = str(workspace.root / "matplotlib")  # Gradio imports it for each answer
        from lib.webapp.page import build_page, theme

        page = build_page(detector, str(args.model), args.precision, workspace, limits)
        print(f"uploads and results: {workspace.root} (removed when the server stops)", flush=True)
        try:
            page.launch(server_name=args.host, server_port=args.port, auth=args.auth, theme=theme(),
                        max_file_size=limits.max_upload_bytes, show_error=True)
        finally:  # stopping: a second Ctrl-C or SIGTERM must not cut the clean-up short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            page.close()


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    official = args.model is None
    try:
        detector = load_detector(args)
    except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
        print(f"error: {model_error_text(e, args.precision, official)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    warning = exposure_warning(args.host, args.auth)
    if warning:
        print(warning, file=sys.stderr)
    with sigterm_as_ctrl_c():
        try:
            serve(args, detector)
        except OSError as e:
            print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        except KeyboardInterrupt:
            pass
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
