"""`python3 -m model.weights ssh|imagenet`: fetch and verify an official weight file (official.py)."""
import sys

from .official import main

sys.exit(main())
