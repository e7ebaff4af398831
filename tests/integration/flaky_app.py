"""An app factory that fails while a flag file exists: a bad deploy, switched on and off by a test.

INI: ``[app:main] use = call:tests.integration.flaky_app:app_factory`` and ``broken_flag = PATH``.
"""

from __future__ import annotations

import os
from typing import Any

from tests.integration import hookmod


def app_factory(global_conf: dict, broken_flag: str, **local_conf: Any) -> Any:
    if os.path.exists(broken_flag):
        raise RuntimeError(f"bad deploy: {broken_flag} exists")
    return hookmod.app_factory(global_conf, **local_conf)
