"""An app for the workers' edges: uploads, large answers, files, and outgoing HTTP requests.

/upload   reads the whole body and says how long it was
/bytes    ?size= bytes in one block (larger than the socket buffers, they take many sends)
/file     a regular file through wsgi.file_wrapper (path in ?path=)
/fetch    GETs ?port=N&path=P from 127.0.0.1 with http.client (blocking code, greened by the worker)
/sleep    sleeps ?seconds= with time.sleep (blocking code, greened by the worker)
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/upload":
        body = str(len(environ["wsgi.input"].read())).encode()
    elif path == "/bytes":
        body = b"x" * int(query["size"])
    elif path == "/file":
        f = open(query["path"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    elif path == "/fetch":
        conn = http.client.HTTPConnection("127.0.0.1", int(query["port"]), timeout=30)
        try:
            conn.request("GET", query["path"])
            body = conn.getresponse().read()
        finally:
            conn.close()
    elif path == "/sleep":
        time.sleep(float(query["seconds"]))
        body = b"slept"
    else:
        body = b"edges"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app_factory(global_conf, **local_conf):
    return app
