"""A real Pyramid app, loaded by PasteDeploy from an INI file, served by pasteserve under `pserve`
and `pasteserve_paster`."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.server import BIN, Client, Server, get

HERE = Path(__file__).resolve().parent / "pyramid_app"
APP_INI = HERE / "app.ini"
EVENTLET_INI = HERE / "eventlet.ini"
THREADS_INI = HERE / "threads.ini"


@contextmanager
def serve(argv: list[str], cwd: Path, workers: int) -> Iterator[Server]:
    server = Server(argv, cwd)
    try:
        server.start()
        server.wait_workers(workers)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pserve_sync(tmp_path_factory) -> Iterator[Server]:
    with serve([str(BIN / "pserve"), str(APP_INI)], tmp_path_factory.mktemp("pserve-sync"), 2) as server:
        yield server


@pytest.fixture(scope="module", params=["pserve", "pasteserve_paster"])
def pserve_eventlet(request, tmp_path_factory) -> Iterator[Server]:
    """One eventlet worker, started by either command: both go through our server factory."""
    with serve([str(BIN / request.param), str(EVENTLET_INI)], tmp_path_factory.mktemp("eventlet"), 1) as server:
        yield server


def get_json(port: int, path: str) -> dict:
    status, headers, body = get(port, path)
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def post_form(client: Client, path: str, form: str) -> tuple[int, dict[str, str], bytes]:
    client.send(f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(form)}\r\n\r\n{form}".encode())
    return client.response()


def test_json_view(pserve_sync):
    data = get_json(pserve_sync.port, "/json?name=caf%C3%A9&n=2")
    assert data["path"] == "/json"
    assert data["query"] == {"name": "café", "n": "2"}
    assert data["pid"] in pserve_sync.children()


def test_form_posts_on_one_keep_alive_connection(pserve_sync):
    with Client(pserve_sync.port) as client:
        for n in range(2):
            status, _, body = post_form(client, "/form", f"a=1&b=two+words&n={n}")
            assert status == 200
            assert json.loads(body)["form"] == {"a": "1", "b": "two words", "n": str(n)}


def test_settings_come_from_the_ini(pserve_sync):
    data = get_json(pserve_sync.port, "/settings")
    assert data["greeting"] == "hello from app.ini"
    # %(here)s is the INI's directory, as PasteDeploy promises.
    assert data["data_dir"] == str(HERE / "data")


def test_view_that_raises_is_a_500_and_the_workers_live(pserve_sync):
    workers = sorted(pserve_sync.children())
    status, _, body = get(pserve_sync.port, "/boom")
    assert status == 500
    assert b"boom requested" not in body  # the traceback goes to the log, not to the client
    pserve_sync.wait_for(lambda: "RuntimeError: boom requested by the test" in pserve_sync.log(), 5,
                         "the traceback in the error log")
    assert get_json(pserve_sync.port, "/json")["pid"] in workers
    assert sorted(pserve_sync.children()) == workers


def test_sync_workers_keep_real_thread_locals(pserve_sync):
    data = get_json(pserve_sync.port, "/locals")
    assert data["thread_patched"] is False
    assert data["threading_local"] == "_thread._local"
    assert data["current_request_is_this"] is True


def test_pasteserve_paster_serves_the_same_ini(tmp_path):
    with serve([str(BIN / "pasteserve_paster"), str(APP_INI)], tmp_path, 2) as server:
        assert get_json(server.port, "/settings")["greeting"] == "hello from app.ini"
        with Client(server.port) as client:
            assert json.loads(post_form(client, "/form", "x=1")[2])["form"] == {"x": "1"}


def test_pserve_key_value_sets_the_worker_count(tmp_path):
    with serve([str(BIN / "pserve"), str(APP_INI), "workers=3"], tmp_path, 3) as server:
        assert get_json(server.port, "/json")["pid"] in server.children()


def test_eventlet_patches_before_the_app_is_loaded(pserve_eventlet):
    data = get_json(pserve_eventlet.port, "/locals")
    assert data["thread_patched"] is True
    assert data["threading_local"] == "eventlet.corolocal.local"
    # Pyramid's request/registry stack subclasses threading.local at import: green too.
    assert data["pyramid_local_base"] == "eventlet.corolocal.local"
    assert data["current_request_is_this"] is True


def test_eventlet_worker_runs_sleeping_views_concurrently(pserve_eventlet):
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: get_json(pserve_eventlet.port, "/sleep?seconds=1"), range(2)))
    elapsed = time.monotonic() - started
    # One worker: both requests overlapped only if time.sleep was green (a correctness bound, not speed).
    assert answers[0]["pid"] == answers[1]["pid"]
    assert all(a["slept"] >= 0.9 for a in answers)
    assert elapsed < 1.9


def test_waitress_style_threads_serve_views_side_by_side_with_their_own_request(tmp_path):
    with serve([str(BIN / "pserve"), str(THREADS_INI)], tmp_path, 1) as server:
        assert "Using worker: gthread (4 threads)" in server.log()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: get_json(server.port, "/sleep?seconds=1"), range(4)))
        elapsed = time.monotonic() - started
        assert len({a["pid"] for a in answers}) == 1
        # Pyramid's thread-local request stack kept each thread's own request while the others ran.
        assert all(a["current_request_is_this"] and a["slept"] >= 0.9 for a in answers), answers
        # One process, four views at once (one at a time would take 4 s): a correctness bound.
        assert elapsed < 2.5, elapsed
        data = get_json(server.port, "/locals")
        assert (data["thread_patched"], data["threading_local"]) == (False, "_thread._local")
