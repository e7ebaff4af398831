"""`--print-config` and `--check-config`: what the settings resolved to, and whether the app loads."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .hooks import HookError, Hooks
from .loader import AppLoadError, prepare_import
from .settings import SETTINGS, Settings


def print_config(settings: Settings) -> None:
    """`--print-config`: every setting, its value and where the value came from."""
    width = max(len(s.name) for s in SETTINGS)
    for s in SETTINGS:
        value = getattr(settings, s.name)
        shown = getattr(value, "__qualname__", None) if callable(value) else None
        print(f"{s.name:<{width}} = {shown or value!r}    # {settings.sources.get(s.name, 'default')}")
    for notice in settings.notices:
        print(f"# {notice}")


def check_config(source: Any, settings: Settings) -> int:
    """`--check-config`: settings are valid already; load the hooks and the app as a worker would."""
    if settings.chdir:
        os.chdir(settings.chdir)
    prepare_import(settings)
    try:
        Hooks(settings.hooks(), logging.getLogger("pasteserve.error"))
        source.load_app()
    except HookError as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 2
    except AppLoadError as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        print(f"pasteserve: cannot load the app: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    for notice in settings.notices:
        print(f"pasteserve: {notice}")
    print(f"pasteserve: configuration OK; the app {source.name} loads")
    return 0
