"""The master's pidfile: written atomically, never through a planted symlink, removed only if ours."""

from __future__ import annotations

import os
import tempfile


def write(path: str, pid: int) -> None:
    """Write `pid` to `path` (mode 0644) through a fresh temp file in the same directory.

    mkstemp opens with O_EXCL, so no file or symlink an attacker placed is followed, and the
    rename replaces whatever `path` was (a symlink included) without writing through it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pasteserve-", suffix=".pid", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{pid}\n".encode())
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise


def remove_if_ours(path: str, pid: int) -> None:
    """Remove `path` when it still names `pid` (a newer master may have taken it)."""
    try:
        with open(path) as f:
            if int(f.read().strip() or 0) == pid:
                os.unlink(path)
    except (OSError, ValueError):
        pass
