"""The standard modules as they were before eventlet patched them.

The master of an eventlet server runs patched but never runs a hub, and a datagram that cannot
leave at once must be dropped, not waited for: code that must never wait uses these originals.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def original(name: str) -> ModuleType:
    """The standard module ``name``, not eventlet's green copy."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched(name):
        return patcher.original(name)
    return importlib.import_module(name)
