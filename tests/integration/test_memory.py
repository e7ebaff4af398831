"""What a worker holds: modules only startup or a mistake needs stay out of the master and workers.

A module the master imports before forking counts in every worker's resident memory too, so
these are loaded only where needed (issue 13: worker RSS no larger than Gunicorn's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.server import Client, children, get

# hupper (with subprocess): only when a reloader runs the process; difflib: only for "did you
# mean"; encodings.idna (with stringprep): only to bind a host name that is not ASCII.
NOT_LOADED = ("hupper", "subprocess", "difflib", "encodings.idna", "stringprep")
# eventlet imports subprocess and, through dnspython, encodings.idna by itself.
NOT_LOADED_BY_EVENTLET = ("hupper", "difflib")
# configparser: only to read an INI file.
NOT_LOADED_WITHOUT_INI = ("configparser",)


def worker_modules(port: int) -> set[str]:
    status, _, body = get(port, "/modules")
    assert status == 200, body
    return set(json.loads(body))


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "eventlet"])
def test_worker_loads_no_module_it_does_not_use(start_server, worker_class):
    threads = ["--threads", "4"] if worker_class == "gthread" else []
    wc = "sync" if worker_class == "gthread" else worker_class
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "1", "--worker-class", wc,
                                              *threads, "tests.apps:router"])
    loaded = worker_modules(server.port)
    assert "pasteserve.connection" in loaded   # it is the worker that answered
    unwanted = NOT_LOADED_BY_EVENTLET if worker_class == "eventlet" else NOT_LOADED
    unwanted += NOT_LOADED_WITHOUT_INI
    assert loaded.isdisjoint(unwanted), sorted(loaded & set(unwanted))


def test_worker_of_an_ini_file_loads_no_module_it_does_not_use(start_server):
    server = start_server("pasteserve_paster", ini=ini_text(
        "bind = 127.0.0.1:0\nworkers = 1", app="use = call:tests.apps:app_factory"))
    loaded = worker_modules(server.port)
    assert loaded.isdisjoint(NOT_LOADED), sorted(loaded & set(NOT_LOADED))


def worker_rss_kib(master: int) -> int:
    (worker,) = children(master)
    status = Path(f"/proc/{worker}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


def rss_growth_kib(start_server, path: str, requests: int, headers=lambda number: ()) -> tuple[int, int]:
    """One worker's RSS (KiB) after a first request to ``path``, and after ``requests`` more on the
    same connection, each with ``headers(number)``."""
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "1", "tests.apps:router"])
    with Client(server.port) as client:
        assert client.get(path)[0] == 200
        before = worker_rss_kib(server.pid)
        for number in range(requests):
            assert client.get(path, headers(number))[0] == 200
        return before, worker_rss_kib(server.pid)


def test_invented_header_names_leave_no_memory_behind(start_server):
    # The parser and the environ builder remember the names they have seen (1,024 at most); a
    # client sending a new 8 KB name per request must not make them hold megabytes for good.
    before, after = rss_growth_kib(start_server, "/hello", 1024,
                                   lambda number: [f"X-{number:04d}-" + "a" * 8000 + ": 1"])
    assert after - before < 4096, f"worker RSS grew from {before} to {after} KiB"


def test_header_values_an_app_never_repeats_leave_no_memory_behind(start_server):
    # Rendered header lines are remembered too (1,024 at most): an app sending a new long value
    # per response (a cookie, a token) must not make the worker hold megabytes for good.
    before, after = rss_growth_kib(start_server, "/unique-header", 1024)
    assert after - before < 4096, f"worker RSS grew from {before} to {after} KiB"


def test_request_header_lines_a_client_never_repeats_leave_no_memory_behind(start_server):
    # The parser remembers whole header lines (512 at most, then it starts again): a client
    # sending a new 250-byte line per request must not make the worker hold them for good.
    before, after = rss_growth_kib(start_server, "/hello", 4096,
                                   lambda number: [f"X-Trace: {number:06d}" + "t" * 240])
    assert after - before < 2048, f"worker RSS grew from {before} to {after} KiB"
