"""``python -m selfexpand ...``: the same command line as the ``selfexpand`` script."""

import sys

from .cli import main

sys.exit(main())
