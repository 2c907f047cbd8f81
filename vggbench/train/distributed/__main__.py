"""``python -m vggbench.train.distributed``: serve the scheduler or server role named by ``DMLC_ROLE``."""

import sys

from vggbench.train.distributed.server import main

sys.exit(main())
