"""Takes over a second to import: a zygote that preloads it is slow to start (test helper)."""

from __future__ import annotations

import time

time.sleep(1.5)
