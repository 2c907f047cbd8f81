"""``python -m vggbench.cli``: the command line."""

import sys

from vggbench.cli import main

sys.exit(main())
