"""What driving the served explorer in a browser needs (its browser test and its latency bench):
the system's Chromium and a free local port. No user interface code."""

from __future__ import annotations

import os
import shutil
import socket

__all__ = ["chromium_path", "free_port"]

#: where Debian's ``chromium`` package puts the browser binary (the launcher script may be a wrapper)
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"


def chromium_path() -> str | None:
    """The system's Chromium executable, or ``None`` if there is none."""
    for path in (DEBIAN_CHROMIUM, shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if path and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    """A TCP port on localhost that is free now."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
