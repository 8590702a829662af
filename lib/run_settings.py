"""What an output folder was made with, so that `test.py --resume` never mixes two runs' outputs.

A run given --resume records its settings (model file, precision, test config, output options) in
`<out>/.ssh_run.json`; the same command run again finds them equal and goes on where the first one
stopped, while a run with other settings is refused before it writes anything.
"""
import json
from pathlib import Path

from .utils.atomic import atomic_write_text

SETTINGS_FILE = ".ssh_run.json"


def check_settings(out, settings):
    """True when `out` holds a run with these `settings` (a JSON-serialisable dict), False when it holds
    none (they are recorded now); ValueError naming up to three differences when it holds another run."""
    path = Path(out) / SETTINGS_FILE
    settings = json.loads(json.dumps(settings, default=str))
    if not path.is_file():
        atomic_write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")
        return False
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read ({e}): delete it to start the run anew") from None
    changed = [f"{key} was {earlier.get(key)!r}, now {settings.get(key)!r}"
               for key in sorted(set(earlier) | set(settings)) if earlier.get(key) != settings.get(key)]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ValueError(f"--resume: {out} holds the outputs of a run with other settings ({'; '.join(changed[:3])}"
                         f"{more}): give another --out, or leave --resume out to overwrite")
    return True
