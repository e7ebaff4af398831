import errno
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading

import pytest

from pasteserve.sockets import (
    BindError,
    BindSpec,
    close_listeners,
    create_listeners,
    describe,
    fds_env,
    inherited_fds,
    inherited_specs,
    parse_bind,
    ssl_context,
)


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this host")


@pytest.fixture
def opened():
    """Collects sockets a test creates and closes them whatever happens."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def listen(opened, specs, **kwargs):
    listeners = create_listeners([parse_bind(s) if isinstance(s, str) else s for s in specs], **kwargs)
    opened.extend(listeners)
    return listeners


def held_listener(opened, family=socket.AF_INET, address=("127.0.0.1", 0)) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    opened.append(sock)
    sock.bind(address)
    sock.listen()
    return sock


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


# --- parse_bind -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, spec, text",
    [
        ("127.0.0.1:8000", BindSpec("tcp", host="127.0.0.1", port=8000), "127.0.0.1:8000"),
        (" localhost:80 ", BindSpec("tcp", host="localhost", port=80), "localhost:80"),
        ("example.com", BindSpec("tcp", host="example.com", port=8000), "example.com:8000"),
        (":9000", BindSpec("tcp", host="0.0.0.0", port=9000), "0.0.0.0:9000"),
        ("9000", BindSpec("tcp", host="0.0.0.0", port=9000), "0.0.0.0:9000"),
        ("*:8080", BindSpec("tcp", host="0.0.0.0", port=8080), "0.0.0.0:8080"),
        ("0", BindSpec("tcp", host="0.0.0.0", port=0), "0.0.0.0:0"),
        ("tcp://127.0.0.1:5000", BindSpec("tcp", host="127.0.0.1", port=5000), "127.0.0.1:5000"),
        ("[::1]:8000", BindSpec("tcp", host="::1", port=8000), "[::1]:8000"),
        ("[::]", BindSpec("tcp", host="::", port=8000), "[::]:8000"),
        ("[fe80::1%eth0]:81", BindSpec("tcp", host="fe80::1%eth0", port=81), "[fe80::1%eth0]:81"),
        ("unix:/tmp/x.sock", BindSpec("unix", path="/tmp/x.sock"), "unix:/tmp/x.sock"),
        ("unix:///tmp/x.sock", BindSpec("unix", path="/tmp/x.sock"), "unix:/tmp/x.sock"),
        ("unix:relative.sock", BindSpec("unix", path="relative.sock"), "unix:relative.sock"),
        ("fd://3", BindSpec("fd", fd=3), "fd://3"),
    ],
)
def test_parse_bind(value, spec, text):
    assert parse_bind(value) == spec
    assert str(spec) == text
    assert parse_bind(text) == spec


@pytest.mark.parametrize(
    "value, words",
    [
        ("", "empty bind address"),
        ("   ", "empty bind address"),
        ("127.0.0.1:", "port must be a number from 0 to 65535, not ''"),
        ("127.0.0.1:http", "port must be a number from 0 to 65535, not 'http'"),
        ("127.0.0.1:65536", "not '65536'"),
        ("127.0.0.1:-1", "not '-1'"),
        ("::1", "write IPv6 addresses in brackets"),
        ("::1:8000", "write IPv6 addresses in brackets"),
        ("[::1:8000", "missing ']'"),
        ("[not-v6]:80", "'not-v6' is not an IPv6 address"),
        ("[::1]8000", "expected ':PORT' after ']'"),
        ("unix:", "empty unix socket path"),
        ("fd://", "fd:// needs a file descriptor number"),
        ("fd://three", "fd:// needs a file descriptor number"),
        ("http://127.0.0.1:80", "expected HOST:PORT"),
        ("my host:80", "whitespace in host"),
    ],
)
def test_parse_bind_errors(value, words):
    with pytest.raises(ValueError) as caught:
        parse_bind(value)
    assert words in str(caught.value)


# --- create_listeners ----------------------------------------------------------------------


def test_tcp_listener(opened):
    [sock] = listen(opened, ["127.0.0.1:0"])
    host, port = sock.getsockname()
    assert host == "127.0.0.1" and port > 0
    assert sock.getblocking() is False
    assert sock.get_inheritable() is False
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    assert describe(sock) == f"http://127.0.0.1:{port}"
    assert describe(sock, tls=True) == f"https://127.0.0.1:{port}"
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(client)
    client.sendall(b"ping")
    sock.setblocking(True)
    conn, _ = sock.accept()
    opened.append(conn)
    assert conn.recv(4) == b"ping"


def test_reuse_port_and_several_specs_in_order(opened, tmp_path):
    listeners = listen(opened, ["127.0.0.1:0", f"unix:{tmp_path}/a.sock"], reuse_port=True, backlog=16)
    assert [s.family for s in listeners] == [socket.AF_INET, socket.AF_UNIX]
    assert listeners[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


@needs_ipv6
def test_ipv6_listener_is_v6_only(opened):
    [sock] = listen(opened, ["[::1]:0"])
    assert sock.family == socket.AF_INET6
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    port = sock.getsockname()[1]
    assert describe(sock) == f"http://[::1]:{port}"


def test_unix_listener_honours_umask_and_is_unlinked_on_close(opened, tmp_path):
    path = tmp_path / "app.sock"
    [sock] = listen(opened, [f"unix:{path}"], umask=0o077)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert describe(sock) == f"unix:{path}"
    client = socket.socket(socket.AF_UNIX)
    opened.append(client)
    client.connect(str(path))
    close_listeners([sock], unlink=True)
    assert sock.fileno() == -1 and not path.exists()


def test_unix_socket_file_survives_a_hand_over_close(opened, tmp_path):
    path = tmp_path / "app.sock"
    [sock] = listen(opened, [f"unix:{path}"])
    close_listeners([sock], unlink=False)
    assert sock.fileno() == -1 and path.exists()


def test_stale_unix_socket_is_replaced(opened, tmp_path):
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays behind, as after a crash
    [sock] = listen(opened, [f"unix:{path}"])
    client = socket.socket(socket.AF_UNIX)
    opened.append(client)
    client.connect(str(path))


def test_live_unix_socket_is_not_stolen(opened, tmp_path):
    path = tmp_path / "live.sock"
    held_listener(opened, socket.AF_UNIX, str(path))
    with pytest.raises(BindError) as caught:
        listen(opened, [f"unix:{path}"])
    assert str(caught.value) == f"unix:{path}: Address already in use (a server listens there)"
    assert caught.value.errno == errno.EADDRINUSE
    assert path.exists()


def test_unix_path_that_is_not_a_socket(opened, tmp_path):
    path = tmp_path / "file.sock"
    path.write_text("data")
    with pytest.raises(BindError, match="the path exists and is not a socket"):
        listen(opened, [f"unix:{path}"])
    assert path.read_text() == "data"


def test_taken_port_fails_after_retrying(opened):
    port = held_listener(opened).getsockname()[1]
    with pytest.raises(BindError) as caught:
        listen(opened, [f"127.0.0.1:{port}"])
    assert str(caught.value) == f"127.0.0.1:{port}: Address already in use"
    assert caught.value.errno == errno.EADDRINUSE
    assert isinstance(caught.value, OSError)


def test_other_bind_errors_name_the_address(opened):
    # 192.0.2.1 (TEST-NET-1) is on no interface here.
    with pytest.raises(BindError) as caught:
        listen(opened, ["192.0.2.1:0"])
    assert str(caught.value) == "192.0.2.1:0: Cannot assign requested address"


def test_host_name_with_an_empty_label_is_a_bind_error(opened):
    # The idna codec raised a bare UnicodeError (a traceback) before the resolver could answer.
    with pytest.raises(BindError, match=r"^a\.\.b:0: "):
        listen(opened, ["a..b:0"])


def test_host_name_is_resolved(opened):
    (sock,) = listen(opened, ["localhost:0"])
    assert sock.getsockname()[0] == "127.0.0.1"


def test_failure_closes_what_was_already_bound(opened, tmp_path):
    path = tmp_path / "file.sock"
    path.write_text("")
    first = tmp_path / "first.sock"
    with pytest.raises(BindError):
        listen(opened, [f"unix:{first}", f"unix:{path}"])
    # The first listener was closed: its stale file is now replaceable.
    listen(opened, [f"unix:{first}"])


def test_fd_spec_wraps_the_descriptor(opened):
    held = held_listener(opened)
    fd = os.dup(held.fileno())
    [sock] = listen(opened, [f"fd://{fd}"])
    assert sock.fileno() == fd
    assert sock.getsockname() == held.getsockname()
    assert sock.family == socket.AF_INET and sock.getblocking() is False


def test_fd_spec_with_a_bad_descriptor(opened):
    fd = os.dup(0)
    os.close(fd)
    with pytest.raises(BindError, match=f"fd://{fd}: Bad file descriptor"):
        listen(opened, [f"fd://{fd}"])


def test_inherited_fd_that_is_not_a_socket(opened, tmp_path):
    fd = os.open(tmp_path / "plain", os.O_CREAT | os.O_RDWR)
    try:
        with pytest.raises(BindError, match=f"inherited fd {fd}: Socket operation on non-socket"):
            listen(opened, ["127.0.0.1:0"], inherited=[fd])
    finally:
        os.close(fd)


def test_inherited_fds_are_matched_by_address(opened, tmp_path):
    tcp = held_listener(opened)
    unix = held_listener(opened, socket.AF_UNIX, str(tmp_path / "app.sock"))
    stray = held_listener(opened)
    tcp_fd, unix_fd, stray_fd = (os.dup(s.fileno()) for s in (tcp, unix, stray))
    port = tcp.getsockname()[1]

    listeners = listen(
        opened,
        [f"unix:{tmp_path}/app.sock", f"127.0.0.1:{port}", "127.0.0.1:0"],
        inherited=[stray_fd, tcp_fd, unix_fd],
    )

    assert [s.fileno() for s in listeners[:2]] == [unix_fd, tcp_fd]
    assert all(s.get_inheritable() is False for s in listeners)
    # Port 0 means any port: the remaining inherited socket on that host serves it.
    assert listeners[2].fileno() == stray_fd
    assert (tmp_path / "app.sock").exists()


def test_unwanted_inherited_fds_are_closed(opened):
    kept, unwanted = held_listener(opened), held_listener(opened)
    kept_fd, unwanted_fd = os.dup(kept.fileno()), os.dup(unwanted.fileno())
    [sock] = listen(opened, [f"127.0.0.1:{kept.getsockname()[1]}"], inherited=[kept_fd, unwanted_fd])
    assert sock.fileno() == kept_fd
    assert not fd_is_open(unwanted_fd)


def test_existing_listeners_are_reused_on_reload(opened, tmp_path):
    [tcp, unix] = listen(opened, ["127.0.0.1:0", f"unix:{tmp_path}/old.sock"])
    port = tcp.getsockname()[1]
    listeners = listen(opened, [f"127.0.0.1:{port}", f"unix:{tmp_path}/new.sock"], existing=[tcp, unix])
    assert listeners[0] is tcp
    assert listeners[1] is not unix and listeners[1].getsockname() == f"{tmp_path}/new.sock"
    # The one no spec wants is still the caller's to close (after its workers let go).
    assert unix.fileno() != -1


def test_failed_reload_leaves_existing_listeners_open(opened, tmp_path):
    [tcp] = listen(opened, ["127.0.0.1:0"])
    (tmp_path / "file.sock").write_text("")
    with pytest.raises(BindError):
        listen(opened, [f"127.0.0.1:{tcp.getsockname()[1]}", f"unix:{tmp_path}/file.sock"], existing=[tcp])
    assert tcp.fileno() != -1


# --- environment hand-over ------------------------------------------------------------------


def test_inherited_fds_from_our_variable():
    assert inherited_fds({"PASTESERVE_FDS": "5,7"}) == [5, 7]
    assert inherited_fds({}) == []


def test_inherited_fds_from_systemd():
    pid = str(os.getpid())
    assert inherited_fds({"LISTEN_PID": pid, "LISTEN_FDS": "2"}) == [3, 4]
    assert inherited_fds({"LISTEN_PID": "1", "LISTEN_FDS": "2"}) == []
    assert inherited_fds({"LISTEN_PID": pid, "LISTEN_FDS": "2", "PASTESERVE_FDS": "4,9"}) == [4, 9, 3]


@pytest.mark.parametrize(
    "env, words",
    [
        ({"PASTESERVE_FDS": "3,x"}, "PASTESERVE_FDS='3,x'"),
        ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"}, "LISTEN_FDS='two'"),
    ],
)
def test_inherited_fds_bad_values(env, words):
    with pytest.raises(ValueError, match=words):
        inherited_fds(env)


def test_inherited_fds_clears_os_environ(monkeypatch):
    monkeypatch.setenv("PASTESERVE_FDS", "6")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "http")
    assert inherited_fds() == [6, 3]
    assert not {"PASTESERVE_FDS", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)


def test_fds_env_makes_listeners_inheritable(opened, tmp_path):
    listeners = listen(opened, ["127.0.0.1:0", f"unix:{tmp_path}/x.sock"])
    env = fds_env(listeners)
    assert env == {"PASTESERVE_FDS": ",".join(str(s.fileno()) for s in listeners)}
    assert all(s.get_inheritable() for s in listeners)
    assert inherited_fds(env) == [s.fileno() for s in listeners]


def test_usr2_hand_over_across_exec(opened, tmp_path):
    """A re-executed process finds the listeners by the variable and serves them."""
    [sock] = listen(opened, ["127.0.0.1:0"])
    port = sock.getsockname()[1]
    env = dict(os.environ, **fds_env([sock]))
    child = (
        "import socket\n"
        "from pasteserve.sockets import create_listeners, inherited_fds, parse_bind\n"
        f"[s] = create_listeners([parse_bind('127.0.0.1:{port}')], inherited=inherited_fds())\n"
        "s.setblocking(True)\n"
        "conn, _ = s.accept()\n"
        "conn.sendall(b'served by fd %d' % s.fileno())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, close_fds=False)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        opened.append(client)
        assert client.recv(100) == b"served by fd %d" % sock.fileno()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def test_tls_handshake(opened, certificate):
    cert, key = certificate
    context = ssl_context(cert, key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    [listener] = listen(opened, ["127.0.0.1:0"])
    listener.setblocking(True)
    result = {}

    def serve():
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            result["version"] = tls.version()
            tls.sendall(b"hello")

    server = threading.Thread(target=serve)
    server.start()
    try:
        client_context = ssl.create_default_context(cafile=cert)
        raw = socket.create_connection(listener.getsockname(), timeout=10)
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
            assert client.recv(5) == b"hello"
    finally:
        server.join(timeout=10)
    assert result["version"] in ("TLSv1.2", "TLSv1.3")


def test_tls_client_verification(certificate):
    cert, key = certificate
    context = ssl_context(cert, key, ca_certs=cert, cert_reqs=ssl.CERT_REQUIRED, ciphers="ECDHE+AESGCM")
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1


def test_tls_minimum_version_and_numeric_cert_reqs(certificate):
    cert, key = certificate
    context = ssl_context(cert, key, ca_certs=cert, cert_reqs=1, min_version="1.3")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_OPTIONAL


def test_tls_certificate_in_the_key_file(certificate, tmp_path):
    cert, key = certificate
    both = tmp_path / "both.pem"
    both.write_text(open(cert).read() + open(key).read())
    assert isinstance(ssl_context(str(both), None), ssl.SSLContext)


@pytest.mark.parametrize(
    "make_args, words",
    [
        (lambda cert, key: ("/nonexistent/cert.pem", None, {}), "from /nonexistent/cert.pem: No such file"),
        (lambda cert, key: (key, cert, {}), "cannot load TLS certificate and key from"),
        (lambda cert, key: (cert, key, {"ca_certs": "/nonexistent/ca.pem"}), "CA certificates from /nonexistent/ca.pem"),
        (lambda cert, key: (cert, key, {"ciphers": "NOT-A-CIPHER"}), "invalid TLS cipher list 'NOT-A-CIPHER'"),
        (lambda cert, key: (cert, key, {"cert_reqs": ssl.CERT_REQUIRED}), "needs ca_certs"),
    ],
)
def test_tls_errors_name_the_culprit(certificate, make_args, words):
    certfile, keyfile, options = make_args(*certificate)
    with pytest.raises(ValueError) as caught:
        ssl_context(certfile, keyfile, **options)
    assert words in str(caught.value)


def test_inherited_specs_leave_os_environ_for_inherited_fds(monkeypatch):
    # The arbiter asks what to serve without a bind, then adopts the fds (which clears the variables).
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert inherited_specs() == [BindSpec("fd", fd=3), BindSpec("fd", fd=4)]
    assert os.environ["LISTEN_FDS"] == "2"
    assert inherited_fds() == [3, 4]
    assert inherited_specs() == []
