"""A minimal Django project served as users do: `pasteserve -w 2 mysite.wsgi:application`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.server import BIN, Client, Server, get, request

SITE = Path(__file__).resolve().parent / "django_site"


@pytest.fixture(scope="module")
def django_server(tmp_path_factory) -> Iterator[Server]:
    # --chdir puts the project directory on sys.path, as with Gunicorn.
    argv = [str(BIN / "pasteserve"), "-w", "2", "-b", "127.0.0.1:0", "--chdir", str(SITE),
            "mysite.wsgi:application"]
    server = Server(argv, tmp_path_factory.mktemp("django"), env={"DJANGO_SETTINGS_MODULE": "mysite.settings"})
    try:
        server.start()
        server.wait_workers(2)
        yield server
    finally:
        server.stop()


def post(port: int, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict, bytes]:
    return request(port, f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                         f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def test_view_sees_the_request_path_and_query(django_server):
    status, headers, body = get(django_server.port, "/echo/?q=caf%C3%A9")
    assert status == 200
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert (data["method"], data["path"], data["query"]) == ("GET", "/echo/", {"q": "café"})
    assert data["pid"] in django_server.children()


def test_post_body_is_echoed_by_a_csrf_exempt_view(django_server):
    payload = json.dumps({"text": "é" * 3000}).encode()
    status, _, body = post(django_server.port, "/echo/", payload)
    assert status == 200
    data = json.loads(body)
    assert data["body"].encode() == payload
    assert data["content_type"] == "application/json"


def test_keep_alive_serves_several_django_requests(django_server):
    with Client(django_server.port) as client:
        for n in range(3):
            status, _, body = client.get(f"/echo/?n={n}")
            assert status == 200 and json.loads(body)["query"] == {"n": str(n)}


def test_csrf_middleware_guards_other_views(django_server):
    assert post(django_server.port, "/guarded/", b"x=1", "application/x-www-form-urlencoded")[0] == 403


def test_unknown_path_is_django_404(django_server):
    status, _, body = get(django_server.port, "/no/such/page/")
    assert status == 404
    assert b"Not Found" in body


def test_common_middleware_redirects_to_the_slash_url(django_server):
    status, headers, _ = get(django_server.port, "/echo?x=1")
    assert status == 301
    assert headers["location"] == "/echo/?x=1"


def test_disallowed_host_is_djangos_400(django_server):
    status, _, body = request(django_server.port,
                              b"GET /echo/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status == 400
    assert b"Bad Request (400)" in body  # Django's page: the server passed the Host header through


def test_view_that_raises_is_a_500_and_the_workers_live(django_server):
    workers = sorted(django_server.children())
    status, _, body = get(django_server.port, "/boom/")
    assert status == 500
    assert b"Server Error" in body  # Django's own production error page
    assert get(django_server.port, "/echo/")[0] == 200
    assert sorted(django_server.children()) == workers
