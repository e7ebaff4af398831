"""The websocket benchmark's own test: one short run against pasteserve (run: .venv/bin/python -m pytest benchmarks)."""

from benchmarks import websocket


def test_short_run_against_pasteserve():
    result = websocket.run("pasteserve eventlet", [5], duration=1.0, idle=200)
    rate, failed = result[5]
    assert failed == 0
    assert rate > 0
    assert 0 < result["memory"] < 1024   # KiB per idle websocket: a green thread, not a process
