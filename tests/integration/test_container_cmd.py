"""The Dockerfile's CMD from docs/deploy.md, run as a container would: PORT, WEB_CONCURRENCY, TERM."""

from __future__ import annotations

import json
import os
import re
import signal

from tests.server import free_port
from tests.server import BIN, REPO, Server, get


def dockerfile_cmd() -> list[str]:
    guide = (REPO / "docs" / "deploy.md").read_text()
    dockerfile = re.search(r"^```dockerfile\n(.*?)^```$", guide, re.S | re.M).group(1)
    return json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))


def test_dockerfile_cmd_reads_port_and_web_concurrency_and_stops_on_term(tmp_path):
    argv = dockerfile_cmd()
    assert argv[:2] == ["sh", "-c"] and argv[2].startswith("exec pasteserve ")
    # Our test app instead of the example's; everything else as written.
    argv[2] = argv[2].replace("myapp.wsgi:application", "tests.apps:router")
    port = free_port()
    server = Server(argv, tmp_path, {"PORT": str(port), "WEB_CONCURRENCY": "3",
                                     "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        server.start()
        assert server.addresses == [f"http://0.0.0.0:{port}"]
        assert len(server.wait_workers(3)) == 3   # exec: the shell became the pasteserve master
        assert get(port, "/")[0] == 200
        server.signal(signal.SIGTERM)             # what `docker stop` sends to PID 1
        assert server.wait_exit(30) == 0
    finally:
        server.stop()
