"""``python -m monitor``: the same as the ``synthmon`` console script."""

import sys

from monitor.cli import main

sys.exit(main())
