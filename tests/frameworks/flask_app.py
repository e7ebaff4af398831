"""A small Flask app for the framework tests: `pasteserve tests.frameworks.flask_app:app`."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Iterator

from flask import Flask, Response, jsonify, request, send_file, url_for

app = Flask(__name__)


@app.get("/json")
def json_route() -> Response:
    return jsonify(pid=os.getpid(), path=request.path, args=request.args.to_dict())


@app.get("/stream")
def stream() -> Response:
    """Yields a first part, then waits for the test to create the `gate` file before the rest.

    The client can only read the first part before the gate opens if the server sent it at once:
    a streaming test without any timing assumption. `closed` names a file that says, once the
    generator is closed, how many lines it gave.
    """
    gate = Path(request.args["gate"])
    closed = request.args.get("closed")
    lines = int(request.args.get("lines", "3"))

    def parts() -> Iterator[str]:
        sent = 0
        try:
            yield "first part\n"
            deadline = time.monotonic() + 5
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            yield "gate open\n" if gate.exists() else "gate timed out\n"
            for n in range(lines):
                yield f"line {n}\n"
                sent += 1
        finally:
            # Runs when the server closes the iterable, also after the client went away (PEP 3333).
            if closed:
                Path(closed).write_text(f"{sent} of {lines} lines")

    return Response(parts(), mimetype="text/plain")


@app.post("/upload")
def upload() -> Response:
    uploaded = request.files["file"]
    data = uploaded.read()
    return jsonify(filename=uploaded.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@app.get("/links")
def links() -> Response:
    return jsonify(script_root=request.script_root, path=request.path,
                   json=url_for("json_route"), external=url_for("json_route", _external=True))


@app.get("/file")
def file_route() -> Response:
    """send_file with conditional and range support; the server may use wsgi.file_wrapper."""
    return send_file(request.args["path"], mimetype="application/octet-stream", conditional=True, etag=True)
