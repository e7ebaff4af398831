"""TLS options against real servers: client certificates (mutual TLS), tls_min_version, ciphers.

Certificates are made with the openssl command: a test CA, a server certificate for
127.0.0.1, a client certificate from that CA, and one from a stranger's CA.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.server import read_response, wait_until

APP = "tests.integration.rt_app:app"
WORKER_CLASSES = ["sync", "eventlet"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=directory)


def _signed(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    directory = tmp_path_factory.mktemp("pki")
    _ca(directory, "test-ca")
    _ca(directory, "stranger-ca")
    _signed(directory, "server", "test-ca", "subjectAltName=IP:127.0.0.1")
    _signed(directory, "alice", "test-ca", "extendedKeyUsage=clientAuth")
    _signed(directory, "mallory", "stranger-ca", "extendedKeyUsage=clientAuth")
    return directory


@pytest.fixture(params=WORKER_CLASSES)
def worker_class(request) -> str:
    return request.param


def serve(start_server, pki: Path, worker_class: str, *options: str, expect_listening: bool = True):
    return start_server("pasteserve", expect_listening=expect_listening, args=[
        "-k", worker_class, "-b", "127.0.0.1:0", "--certfile", str(pki / "server.pem"),
        "--keyfile", str(pki / "server.key"), *options, APP])


def client_context(pki: Path, cert: str | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "test-ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def https_environ(port: int, context: ssl.SSLContext) -> dict:
    """GET /environ over TLS; raises ssl.SSLError or OSError when the server refuses."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock, sock.makefile("rb") as rfile:
            sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, body = read_response(rfile)
    assert status == 200, body
    return json.loads(body)


def refused(port: int, context: ssl.SSLContext) -> bool:
    """The TLS layer turned the client away: a failed handshake, an alert, or a close; never HTTP."""
    try:
        https_environ(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


def test_mutual_tls_required(start_server, pki, worker_class):
    server = serve(start_server, pki, worker_class, "--ca-certs", str(pki / "test-ca.pem"), "--cert-reqs", "required")
    env = https_environ(server.port, client_context(pki, "alice"))
    assert env["wsgi.url_scheme"] == "https"
    assert ["commonName", "alice"] in [pair for rdn in env["pasteserve.peercert"]["subject"] for pair in rdn]
    assert env["SSL_CLIENT_CERT"].startswith("-----BEGIN CERTIFICATE-----")
    assert ssl.PEM_cert_to_DER_cert(env["SSL_CLIENT_CERT"]) == \
        ssl.PEM_cert_to_DER_cert((pki / "alice.pem").read_text())
    assert refused(server.port, client_context(pki))             # no certificate
    assert refused(server.port, client_context(pki, "mallory"))  # a certificate from another CA
    assert https_environ(server.port, client_context(pki, "alice"))["SSL_CLIENT_CERT"]   # still serving


def test_optional_client_certificate(start_server, pki, worker_class):
    server = serve(start_server, pki, worker_class, "--ca-certs", str(pki / "test-ca.pem"), "--cert-reqs", "1")
    anonymous = https_environ(server.port, client_context(pki))
    assert "pasteserve.peercert" not in anonymous and "SSL_CLIENT_CERT" not in anonymous
    assert https_environ(server.port, client_context(pki, "alice"))["pasteserve.peercert"]["subject"]
    assert refused(server.port, client_context(pki, "mallory"))   # sent, so verified: and it fails


def test_no_client_certificate_is_asked_for_by_default(start_server, pki):
    server = serve(start_server, pki, "sync")
    env = https_environ(server.port, client_context(pki, "alice"))
    assert "pasteserve.peercert" not in env and "SSL_CLIENT_CERT" not in env


def test_tls_min_version(start_server, pki, worker_class):
    server = serve(start_server, pki, worker_class, "--tls-min-version", "1.3")
    assert refused(server.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert https_environ(server.port, client_context(pki))["wsgi.url_scheme"] == "https"


def test_tls_options_from_an_ini(start_server, pki):
    server = start_server("pasteserve_paster", ini=(
        "[app:main]\nuse = call:tests.integration.rt_app:app_factory\n\n"
        "[server:main]\nuse = egg:pasteserve#main\nbind = 127.0.0.1:0\n"
        f"certfile = {pki / 'server.pem'}\nkeyfile = {pki / 'server.key'}\n"
        f"ca_certs = {pki / 'test-ca.pem'}\ncert_reqs = required\n"
        "ciphers = ECDHE+AESGCM\ntls_min_version = 1.2\n"))
    context = client_context(pki, "alice", maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert https_environ(server.port, context)["SSL_CLIENT_CERT"]
    context = client_context(pki, "alice", maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")   # not in the server's list
    assert refused(server.port, context)


@pytest.mark.parametrize("options, message", [
    (["--cert-reqs", "required"], "needs ca_certs"),
    (["--ciphers", "NO-SUCH-CIPHER"], "invalid TLS cipher list 'NO-SUCH-CIPHER'"),
])
def test_bad_tls_options_stop_the_server_with_a_clear_message(start_server, pki, options, message):
    server = serve(start_server, pki, "sync", *options, expect_listening=False)
    wait_until(lambda: server.proc.poll() is not None, 20, "the server to exit")
    assert server.proc.returncode != 0
    assert message in server.log()
