"""Listening sockets: bind specs, binding once in the master, inherited fds, TLS.

The master binds every listener before forking, so workers share them; a USR2 re-exec
or systemd hands them over by file descriptor, and those are reused rather than bound
again, so no connection queued on them is lost.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import ssl
import stat
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .logs import ERROR_LOGGER

DEFAULT_PORT = 8000
FDS_ENV = "PASTESERVE_FDS"
_SYSTEMD_FIRST_FD = 3
# Gunicorn retries a busy address 5 times; over ~1 s a previous master usually lets go.
_BIND_ATTEMPTS = 5
_BIND_RETRY_DELAY = 0.25

log = logging.getLogger(ERROR_LOGGER)

# tls_min_version values; older versions are not offered at all.
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# cert_reqs words (Gunicorn takes the numbers of Python's ssl.CERT_* constants).
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class BindError(OSError):
    """A listener could not be created; str() is "ADDRESS: reason"."""

    def __str__(self) -> str:
        return self.strerror if self.strerror is not None else super().__str__()


@dataclass(frozen=True)
class BindSpec:
    """Where to listen: ``kind`` is "tcp" (host, port), "unix" (path) or "fd" (fd)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bind(value: str) -> BindSpec:
    """Parse a bind address as users write it; ValueError says precisely what is wrong.

    Accepted: ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``PORT`` (all IPv4
    interfaces), ``*:PORT`` (waitress's spelling of the same), ``HOST`` (port 8000),
    ``tcp://`` before any of those, ``unix:PATH``, ``unix://PATH``, ``fd://N``.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty bind address")
    if text.startswith("unix:"):
        path = text[len("unix://"):] if text.startswith("unix://") else text[len("unix:"):]
        if not path:
            raise ValueError(f"bind {value!r}: empty unix socket path")
        return BindSpec("unix", path=path)
    if text.startswith("fd://"):
        number = text[len("fd://"):]
        if not number.isdigit():
            raise ValueError(f"bind {value!r}: fd:// needs a file descriptor number, like fd://3")
        return BindSpec("fd", fd=int(number))
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
    if "/" in text:
        raise ValueError(f"bind {value!r}: expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N")
    host, port = _split_host_port(text, value)
    return BindSpec("tcp", host=host, port=port)


def _split_host_port(text: str, value: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"bind {value!r}: missing ']' after the IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bind {value!r}: {host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError(f"bind {value!r}: expected ':PORT' after ']'")
        return host, _port(rest[1:], value) if rest else DEFAULT_PORT
    if text.isdigit():
        return "0.0.0.0", _port(text, value)
    if text.count(":") > 1:
        raise ValueError(f"bind {value!r}: write IPv6 addresses in brackets, like [::1]:8000")
    host, colon, port = text.partition(":")
    if host in ("", "*"):
        host = "0.0.0.0"
    if any(c.isspace() for c in host):
        raise ValueError(f"bind {value!r}: whitespace in host {host!r}")
    return host, _port(port, value) if colon else DEFAULT_PORT


def _port(text: str, value: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"bind {value!r}: port must be a number from 0 to 65535, not {text!r}")
    return int(text)


def create_listeners(
    specs: list[BindSpec],
    *,
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int = 0o022,
    inherited: list[int] | None = None,
    existing: Sequence[socket.socket] = (),
    unix_mode: int | None = None,
) -> list[socket.socket]:
    """Return one listening, non-blocking, non-inheritable socket per spec, in order.

    A spec with the address of an ``existing`` socket (the running listeners, on HUP)
    gets that very socket; existing sockets no spec wants stay open: they are still
    the caller's. ``inherited`` fds (a USR2 parent's or systemd's) become ours: one
    matching a spec is wrapped and reused, the others are closed. A TCP spec with
    port 0 takes a socket on the same host and any port. BindError on failure, after
    closing whatever this call opened or adopted. ``unix_mode`` (unix_socket_perms), when
    given, is set on every unix socket file, whatever the umask made of it.
    """
    adopted: list[socket.socket] = []
    listeners: list[socket.socket] = []
    try:
        for fd in inherited or ():
            adopted.append(_adopt(fd, f"inherited fd {fd}"))
        pool = [*existing, *adopted]
        for spec in specs:
            sock = _take_inherited(spec, pool) if pool else None
            if sock is None:
                sock = _open(spec, backlog=backlog, reuse_port=reuse_port, umask=umask)
            sock.setblocking(False)
            sock.set_inheritable(False)
            listeners.append(sock)
            if unix_mode is not None and spec.kind == "unix":
                _chmod(spec, unix_mode)
    except BaseException:
        for sock in adopted + listeners:
            if sock not in existing:
                sock.close()
        raise
    for sock in adopted:
        if sock in pool:
            log.warning("Closing inherited socket %s: no bind address asks for it", describe(sock))
            sock.close()
    return listeners


def _chmod(spec: BindSpec, mode: int) -> None:
    if spec.path.startswith("\0"):
        return   # an abstract-namespace socket has no file
    try:
        os.chmod(spec.path, mode)
    except OSError as exc:
        raise BindError(exc.errno, f"{spec}: cannot set mode {mode:#o}: {exc.strerror}") from exc


def _adopt(fd: int, label: str) -> socket.socket:
    try:
        # Family -1 asks for detection from the fd; eventlet's green socket, which a
        # patched master uses, would otherwise force AF_INET.
        return socket.socket(family=-1, fileno=fd)
    except OSError as exc:
        raise BindError(exc.errno, f"{label}: {exc.strerror}") from exc


def _take_inherited(spec: BindSpec, pool: list[socket.socket]) -> socket.socket | None:
    """Remove from ``pool`` and return the inherited socket serving ``spec``, if any."""
    if spec.kind == "fd":
        for sock in pool:
            if sock.fileno() == spec.fd:
                pool.remove(sock)
                return sock
        return None
    wanted = _address(spec) if spec.kind == "tcp" else spec.path
    for sock in pool:
        if _same_address(spec, wanted, sock):
            pool.remove(sock)
            return sock
    return None


def _same_address(spec: BindSpec, wanted, sock: socket.socket) -> bool:
    if spec.kind == "unix":
        return sock.family == socket.AF_UNIX and sock.getsockname() == wanted
    family, sockaddr = wanted
    if sock.family != family:
        return False
    host, port = sock.getsockname()[:2]
    return _same_host(host, sockaddr[0]) and (spec.port == 0 or port == sockaddr[1])


def _same_host(a: str, b: str) -> bool:
    # Both come from the kernel or getaddrinfo, but compare as addresses anyway
    # ("::1" and "0:0::1" are one host).
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _address(spec: BindSpec) -> tuple[int, tuple]:
    """(family, sockaddr) of a TCP spec; a host name prefers IPv4, as Gunicorn does."""
    # An ASCII host goes as bytes: a str goes through the idna codec, whose import (stringprep,
    # unicodedata) stays in the master and every worker, and which raises a bare UnicodeError on
    # a name with an empty label ("a..b") where getaddrinfo says what is wrong.
    host = spec.host.encode("ascii") if spec.host.isascii() else spec.host
    try:
        infos = socket.getaddrinfo(host, spec.port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(exc.errno, f"{spec}: {exc.strerror}") from exc
    family, _, _, _, sockaddr = next((info for info in infos if info[0] == socket.AF_INET), infos[0])
    return family, sockaddr


def _open(spec: BindSpec, *, backlog: int, reuse_port: bool, umask: int) -> socket.socket:
    if spec.kind == "fd":
        sock = _adopt(spec.fd, str(spec))
        try:
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise BindError(exc.errno, f"{spec}: {exc.strerror}") from exc
        return sock
    if spec.kind == "unix":
        _remove_stale_unix_socket(spec)
        family, sockaddr = socket.AF_UNIX, spec.path
    else:
        family, sockaddr = _address(spec)
    attempt = 1
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            _bind(sock, sockaddr, reuse_port=reuse_port, umask=umask)
            sock.listen(backlog)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS:
                raise BindError(exc.errno, f"{spec}: {exc.strerror}") from exc
        log.warning("%s: address in use, retrying (%d/%d)", spec, attempt, _BIND_ATTEMPTS)
        attempt += 1
        time.sleep(_BIND_RETRY_DELAY)


def _bind(sock: socket.socket, sockaddr, *, reuse_port: bool, umask: int) -> None:
    if sock.family == socket.AF_UNIX:
        # The socket file's mode comes from the umask at bind time. The master is
        # single-threaded when it binds, so the process-wide swap is safe.
        previous = os.umask(umask)
        try:
            sock.bind(sockaddr)
        finally:
            os.umask(previous)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        # One socket, one family: "[::]:8000" must not silently take IPv4 too.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(sockaddr)


def _remove_stale_unix_socket(spec: BindSpec) -> None:
    """Unlink a socket file left by a dead server; refuse anything else at the path."""
    try:
        mode = os.lstat(spec.path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(exc.errno, f"{spec}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise BindError(errno.EADDRINUSE, f"{spec}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a listener with a full backlog would block a plain connect
    try:
        probe.connect(spec.path)
    except ConnectionRefusedError:
        os.unlink(spec.path)
        return
    except OSError as exc:
        raise BindError(exc.errno, f"{spec}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise BindError(errno.EADDRINUSE, f"{spec}: Address already in use (a server listens there)")


def inherited_specs(environ: Mapping[str, str] = os.environ) -> list[BindSpec]:
    """``fd://N`` specs for the fds :func:`inherited_fds` will return, leaving the environment as it is.

    What to serve when no ``bind`` is configured: systemd's sockets, or a USR2 parent's.
    """
    return [BindSpec("fd", fd=fd) for fd in _inherited(environ)]


def inherited_fds(environ: Mapping[str, str] = os.environ) -> list[int]:
    """Listening fds handed to this process: ours (USR2) and systemd's socket activation.

    systemd's count only when LISTEN_PID is this process. When ``environ`` is
    ``os.environ`` the variables are removed, so our own children do not see them.
    """
    fds = _inherited(environ)
    if environ is os.environ:
        for key in (FDS_ENV, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    return fds


def _inherited(environ: Mapping[str, str]) -> list[int]:
    fds: list[int] = []
    ours = environ.get(FDS_ENV, "").strip()
    if ours:
        try:
            fds = [int(fd) for fd in ours.split(",")]
        except ValueError:
            raise ValueError(f"{FDS_ENV}={ours!r}: expected fd numbers separated by commas") from None
    if environ.get("LISTEN_PID", "").strip() == str(os.getpid()):
        count = environ.get("LISTEN_FDS", "").strip()
        if not count.isdigit():
            raise ValueError(f"LISTEN_FDS={count!r}: expected a number of fds")
        fds += [
            fd
            for fd in range(_SYSTEMD_FIRST_FD, _SYSTEMD_FIRST_FD + int(count))
            if fd not in fds
        ]
    return fds


def fds_env(listeners: list[socket.socket]) -> dict[str, str]:
    """Environment for a USR2 re-exec; makes the listeners inheritable across exec."""
    for sock in listeners:
        sock.set_inheritable(True)
    return {FDS_ENV: ",".join(str(sock.fileno()) for sock in listeners)}


def close_listeners(listeners: list[socket.socket], unlink: bool) -> None:
    """Close listeners; with ``unlink`` also remove unix socket files.

    Leave ``unlink`` False on a USR2 hand-over: the new master serves the same path.
    """
    for sock in listeners:
        path = None
        if unlink and sock.family == socket.AF_UNIX:
            path = sock.getsockname()
        sock.close()
        # Abstract-namespace names (leading NUL, or bytes) have no file to remove.
        if isinstance(path, str) and path and not path.startswith("\0"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


# struct tcp_info (linux/tcp.h): eight one-byte fields, then 32-bit ones; for a listening socket the
# fifth of those, tcpi_unacked, is how many connections wait in its accept queue.
_TCP_INFO_QUEUED = struct.Struct("=8x4x4x4x4xI")   # rto, ato, snd_mss, rcv_mss skipped
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def queued_connections(listeners: Sequence[socket.socket]) -> int | None:
    """Connections waiting to be accepted on the TCP listeners, summed; None where the kernel does
    not tell (no TCP_INFO). Unix sockets are not counted: nothing tells their queue's length."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    total = 0
    for sock in listeners:
        if sock.family in _TCP_FAMILIES:
            try:
                total += _TCP_INFO_QUEUED.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, option, 104))[0]
            except (OSError, struct.error):
                pass   # closed under us, or a kernel with a shorter struct
    return total


def ssl_context(
    certfile: str,
    keyfile: str | None,
    *,
    ca_certs: str | None = None,
    ciphers: str | None = None,
    cert_reqs: int = ssl.CERT_NONE,
    min_version: str = "1.2",
) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or newer); ValueError names the file or option at fault.

    ``ca_certs`` with ``cert_reqs`` CERT_OPTIONAL or CERT_REQUIRED verifies client
    certificates (Gunicorn's ``ca_certs`` and ``cert_reqs``): with CERT_REQUIRED a client
    without a valid one fails the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[min_version]
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as exc:  # ssl.SSLError included
        files = certfile if keyfile is None else f"{certfile} / {keyfile}"
        raise ValueError(f"cannot load TLS certificate and key from {files}: {_reason(exc)}") from None
    if ca_certs is not None:
        try:
            context.load_verify_locations(ca_certs)
        except OSError as exc:
            raise ValueError(f"cannot load CA certificates from {ca_certs}: {_reason(exc)}") from None
    elif cert_reqs != ssl.CERT_NONE:
        raise ValueError("verifying client certificates (cert_reqs) needs ca_certs, the CA file to check them with")
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ValueError(f"invalid TLS cipher list {ciphers!r}: {_reason(exc)}") from None
    return context


def _reason(exc: OSError) -> str:
    # OpenSSL's text is the strerror; set_ciphers' SSLError has only a message argument.
    return exc.strerror or (str(exc.args[-1]) if exc.args else type(exc).__name__)


def describe(sock: socket.socket, *, tls: bool = False) -> str:
    """The address for the "Listening at" line: http://127.0.0.1:8000, unix:/path."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        name = address.decode(errors="backslashreplace") if isinstance(address, bytes) else address
        return f"unix:{name}"
    scheme = "https" if tls else "http"
    host, port = address[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
