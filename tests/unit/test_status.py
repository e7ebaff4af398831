"""The status table, from a snapshot as heartbeat.read_status returns it."""

from __future__ import annotations

from pasteserve.status import render


def test_table():
    snapshot = {
        "master": {"pid": 10, "name": "app.ini", "age": 3725.0, "generation": 1, "workers_wanted": 2,
                   "heartbeat_age": 0.4, "metrics_dropped": 1},
        "workers": [
            {"pid": 12, "slot": 1, "age": 59.9, "generation": 1, "requests": 7, "connections": 0,
             "stopping": None, "heartbeat_age": 0.1, "metrics_dropped": 0, "request": None},
            {"pid": 11, "slot": 0, "age": 61.0, "generation": 1, "requests": 1234, "connections": 3,
             "stopping": 2.5, "heartbeat_age": 42.25, "metrics_dropped": 2,
             "request": {"method": "GET", "path": "/report", "seconds": 42.3}},
        ],
    }
    assert render(snapshot).splitlines() == [
        "PID  ROLE    AGE    GEN  REQUESTS  CONNS  HEARTBEAT   NOW",
        "10   master  1h02m  1    -         -      0.4 s ago   app.ini: 2 workers (2 wanted), 3 metrics not sent",
        "11   worker  1m01s  1    1234      3      42.2 s ago  serving GET /report for 42.3 s (stopping for 2.5 s)",
        "12   worker  59s    1    7         0      0.1 s ago   idle",
    ]
