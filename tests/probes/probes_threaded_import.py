"""Starts a thread when imported: a zygote that preloads it must refuse to fork (test helper)."""

from __future__ import annotations

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-at-import", daemon=True).start()
