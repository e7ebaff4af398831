"""User and group names (or numbers) of the `user`/`group` settings as ids."""

from __future__ import annotations

import grp
import pwd


def ids(user: str | None, group: str | None) -> tuple[int, int]:
    """(uid, gid) for os.chown; -1 for one not set. Names were checked when the settings were read."""
    uid = -1 if not user else int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid
