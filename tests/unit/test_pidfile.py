"""The pidfile: written atomically with mode 0644, never through a planted symlink."""

from __future__ import annotations

import os

from pasteserve import pidfile


def test_written_0644_whatever_the_umask(tmp_path):
    path = tmp_path / "app.pid"
    previous = os.umask(0)
    try:
        pidfile.write(str(path), 1234)
    finally:
        os.umask(previous)
    assert path.read_text() == "1234\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["app.pid"]


def test_symlinks_planted_at_the_old_temp_name_and_the_path_are_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "app.pid"
    # The name the old code wrote through, and the pidfile itself, both point at the victim.
    os.symlink(victim, f"{path}.{os.getpid()}.tmp")
    os.symlink(victim, path)
    pidfile.write(str(path), 99)
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and path.read_text() == "99\n"


def test_removed_only_while_it_names_us(tmp_path):
    path = tmp_path / "app.pid"
    pidfile.write(str(path), 5)
    pidfile.remove_if_ours(str(path), 6)
    assert path.exists()
    pidfile.remove_if_ours(str(path), 5)
    assert not path.exists()
    pidfile.remove_if_ours(str(path), 5)   # already gone: nothing to do
