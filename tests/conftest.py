import pytest

from tests.server import BIN, Server


def ini_text(server_options: str, app: str = "use = egg:pasteserve#demo", extra: str = "") -> str:
    return f"[app:main]\n{app}\n\n[server:main]\nuse = egg:pasteserve#main\n{server_options}\n{extra}"


@pytest.fixture
def start_server(tmp_path):
    """start_server(argv or ini text, ...) -> a running Server; every one is stopped at the end."""
    started: list[Server] = []

    def start(command, *, ini: str | None = None, args=(), env=None, expect_listening=True,
              timeout: float = 20.0) -> Server:
        if ini is not None:
            path = tmp_path / f"app{len(started)}.ini"
            path.write_text(ini)
            argv = [str(BIN / command), str(path), *args]
        else:
            argv = [str(BIN / command), *args]
        server = Server(argv, tmp_path, env)
        started.append(server)
        return server.start(timeout=timeout, expect_listening=expect_listening)

    yield start
    for server in started:
        server.stop()
