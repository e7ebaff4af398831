"""Worker classes: `sync`, `gthread` (the sync worker with app threads) and `eventlet`.

`prepare(name)` must run before the app's modules are imported: for eventlet it monkey-patches
the standard library so the app (and Pyramid's thread-locals) get green versions.
"""

from __future__ import annotations

import importlib
from typing import Any

WORKER_CLASSES = {
    "sync": "pasteserve.workers.sync:SyncWorker",
    "gthread": "pasteserve.workers.threaded:ThreadedWorker",
    "eventlet": "pasteserve.workers.eventlet:EventletWorker",
}


def prepare(name: str) -> None:
    """Do what a worker class needs done before any app code is imported."""
    if name == "eventlet":
        from .eventlet import patch

        patch()


def chosen(worker_class: str, threads: int) -> str:
    """The worker class that runs: `sync` with threads > 1 is `gthread`, as in Gunicorn."""
    return "gthread" if worker_class == "sync" and threads > 1 else worker_class


def load(name: str) -> Any:
    module, _, cls = WORKER_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
