"""Process titles (`pasteserve: master [app.ini]`), through setproctitle when it is installed."""

from __future__ import annotations

try:
    from setproctitle import setproctitle
except ImportError:  # an optional nicety: without it, ps shows the command line
    setproctitle = None


def set_title(title: str) -> None:
    if setproctitle is not None:
        setproctitle(f"pasteserve: {title}")
