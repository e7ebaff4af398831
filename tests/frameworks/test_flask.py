"""A Flask app served as users do: `pasteserve -w 2 tests.frameworks.flask_app:app`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.server import BIN, Client, Server, get, wait_until

APP = "tests.frameworks.flask_app:app"


def start(cwd: Path, *options: str) -> Server:
    server = Server([str(BIN / "pasteserve"), "-w", "2", "-b", "127.0.0.1:0", *options, APP], cwd)
    try:
        server.start()
        server.wait_workers(2)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def flask_server(tmp_path_factory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("flask"))
    try:
        yield server
    finally:
        server.stop()


def test_json_route(flask_server):
    status, headers, body = get(flask_server.port, "/json?a=1&b=%C3%A9")
    assert status == 200
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert (data["path"], data["args"]) == ("/json", {"a": "1", "b": "é"})
    assert data["pid"] in flask_server.children()


def read_chunk(rfile) -> bytes:
    """One chunk's data; b"" for the last chunk, whose (empty) trailer section is consumed too."""
    size = int(rfile.readline().split(b";")[0], 16)
    data = rfile.read(size)
    assert rfile.readline() == b"\r\n"
    return data


def test_streamed_generator_arrives_chunked_part_by_part(flask_server, tmp_path):
    gate = tmp_path / "gate"
    with Client(flask_server.port) as client:
        client.send(f"GET /stream?gate={gate} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        status_line = client.rfile.readline()
        headers = {}
        while (line := client.rfile.readline()) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        assert status_line.startswith(b"HTTP/1.1 200")
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        # The app is still waiting for the gate: this part can only be here if it was sent at once.
        assert read_chunk(client.rfile) == b"first part\n"
        gate.touch()
        rest = b""
        while chunk := read_chunk(client.rfile):
            rest += chunk
        assert rest == b"gate open\nline 0\nline 1\nline 2\n"
        # The connection is still usable after a chunked response.
        assert client.get("/json")[0] == 200


def test_client_gone_mid_stream_closes_the_generator_and_the_worker_serves_on(flask_server, tmp_path):
    gate, closed = tmp_path / "gate", tmp_path / "closed"
    workers = sorted(flask_server.children())
    client = Client(flask_server.port)
    try:
        # Many lines after the gate: writing them to the vanished client must fail, then close().
        client.send(f"GET /stream?gate={gate}&closed={closed}&lines=100000 HTTP/1.1\r\n"
                    "Host: localhost\r\n\r\n".encode())
        while client.rfile.readline() != b"\r\n":
            pass
        assert read_chunk(client.rfile) == b"first part\n"
    finally:
        client.close()
    gate.touch()
    report = wait_until(lambda: closed.exists() and closed.read_text(), 10, "the generator to be closed")
    # Closed early: the server stopped iterating once the client was gone.
    assert report != "100000 of 100000 lines"
    assert get(flask_server.port, "/json")[0] == 200
    assert sorted(flask_server.children()) == workers


def multipart(boundary: str, note: str, filename: str, data: bytes) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{note}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked", "expect-100-continue"])
def test_multipart_file_upload(flask_server, framing):
    data = os.urandom(300_000)
    body = multipart("pasteserve-boundary", "a note", "blob.bin", data)
    framed, length = body, f"Content-Length: {len(body)}"
    if framing == "chunked":
        # Werkzeug reads an unsized body to its end because the server sets wsgi.input_terminated.
        framed, length = chunked(body), "Transfer-Encoding: chunked"
    elif framing == "expect-100-continue":
        length += "\r\nExpect: 100-continue"
    with Client(flask_server.port) as client:
        client.send(("POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                     "Content-Type: multipart/form-data; boundary=pasteserve-boundary\r\n"
                     f"{length}\r\n\r\n").encode())
        if framing == "expect-100-continue":
            # The body goes only after the interim answer, sent once the app reads the input.
            assert client.response()[0] == 100
        client.send(framed)
        status, _, answer = client.response()
    assert status == 200, answer
    assert json.loads(answer) == {"filename": "blob.bin", "size": len(data), "note": "a note",
                                  "sha256": hashlib.sha256(data).hexdigest()}


def test_send_file_full_range_and_not_modified(flask_server, tmp_path):
    data = os.urandom(200_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    with Client(flask_server.port) as client:
        status, headers, body = client.get(f"/file?path={path}")
        assert (status, headers["content-length"], body == data) == (200, str(len(data)), True)
        status, headers, body = client.get(f"/file?path={path}", headers=["Range: bytes=1000-1999"])
        assert (status, headers["content-range"], body) == (206, f"bytes 1000-1999/{len(data)}", data[1000:2000])
        status, _, body = client.get(f"/file?path={path}", headers=[f"If-None-Match: {headers['etag']}"])
        assert (status, body) == (304, b"")
        # After a file body, a 206 and a 304, the connection still frames the next response right.
        assert client.get("/json")[0] == 200


def test_root_path_becomes_script_name_for_url_for(tmp_path):
    server = start(tmp_path, "--root-path", "/prefix")
    try:
        status, _, body = get(server.port, "/prefix/links")
        assert status == 200
        assert json.loads(body) == {"script_root": "/prefix", "path": "/links", "json": "/prefix/json",
                                    "external": "http://localhost/prefix/json"}
        status, _, body = get(server.port, "/prefix/json")
        assert status == 200 and json.loads(body)["path"] == "/json"
    finally:
        server.stop()
