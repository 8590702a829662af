"""`python3 -m model.weights ssh|imagenet|convert` (cli.py)."""
import sys

from .cli import main

sys.exit(main())
