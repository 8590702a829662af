"""Who can reach the app: the --host and --auth options' checks."""
import argparse
import ipaddress

from ..utils.cli import tcp_port

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_local(host):
    """True when `host` (a name or an address) binds to this machine's loopback only."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host, auth):
    """The warning to print when binding to `host` serves the app beyond this machine, else None."""
    if is_local(host):
        return None
    login = "" if auth else " Anyone who reaches it can use it: add --auth USER:PASSWORD."
    return (f"warning: --host {host} serves the app to other machines over plain HTTP (uploads, results and "
            f"the --auth password travel unencrypted: put it behind an HTTPS reverse proxy).{login}")


def credentials(text):
    """argparse type of --auth: USER:PASSWORD as (user, password), both non-empty (the password may hold ':')."""
    user, sep, password = text.partition(":")
    if not (sep and user and password):
        raise argparse.ArgumentTypeError("expected USER:PASSWORD, both non-empty")
    return user, password


def add_serving_args(parser):
    """Add --host, --port and --auth to an argparse parser."""
    group = parser.add_argument_group("serving")
    group.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network, "
                            "with a warning)")
    group.add_argument("--port", type=tcp_port, default=7860, help="port to listen on (default 7860)")
    group.add_argument("--auth", type=credentials, metavar="USER:PASSWORD",
                       help="ask for this user name and password before showing the page or answering the API")
