"""`reload = true` (hupper): editing the app's code restarts the server with the new code."""

import time

from tests.server import free_port, get


APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"{version}"]
'''


def test_editing_the_app_restarts_the_server_with_the_new_code(start_server, tmp_path):
    module = tmp_path / "reloaded_app.py"
    module.write_text(APP.format(version="v1"))
    port = free_port()
    server = start_server("pasteserve", args=["--reload", "-b", f"127.0.0.1:{port}", "reloaded_app:app"])
    assert get(port, "/")[2] == b"v1"
    edits = []

    def answers_v2():
        # hupper learns which files to watch a moment after they are imported and compares
        # modification times: edit again now and then until the edit is seen.
        if not edits or time.monotonic() - edits[-1] > 1.5:
            module.write_text(APP.format(version="v2"))
            edits.append(time.monotonic())
        try:
            return get(port, "/")[2] == b"v2"
        except OSError:
            return False   # between the old server and the new one
    server.wait_for(answers_v2, 30, "the server to serve the edited code")
    assert "changed; reloading" in server.log()
