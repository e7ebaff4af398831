"""Gunicorn's and waitress's option names, as one table.

Every Gunicorn setting and every waitress adjustment is a `Row`. What a row means here is one of:

- **same**: pasteserve has a native setting of that name (computed from `settings.BY_NAME`, so a
  native setting added later turns its row into "same" by itself);
- **mapped**: a converter turns the value into native settings (waitress `listen` -> `bind`);
- **ignored**: accepted, meaningless here, said once in the log;
- **refused**: an error that names what to use instead.

Translation of INI sections, Python config files and Gunicorn flags, "did you mean", and the
migration guides (``python -m pasteserve.compat gunicorn``) all read this table.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .settings import BY_NAME, CheckError, ConfigError, Problem, Settings, check_bool, check_int
from .settings import settings_from_mapping as _native_settings

GUNICORN = "gunicorn"
WAITRESS = "waitress"

# Declared kinds; `status()` gives the one in force.
SAME, MAPPED, IGNORED, REFUSED, FLAG = "same", "mapped", "ignored", "refused", "flag"


@dataclass(frozen=True)
class Row:
    server: str
    name: str
    kind: str                        # SAME (native, maybe not in this build yet), MAPPED, IGNORED, REFUSED, FLAG
    note: str = ""                   # why, and what to use instead
    targets: tuple[str, ...] = ()    # native settings it becomes (or the one to use instead)
    convert: Callable[[Any], dict[str, Any]] | None = None
    flags: tuple[str, ...] = ()      # Gunicorn's command-line flags
    takes_value: bool = True         # False: the flag is a switch


def status(row: Row) -> tuple[str, str]:
    """(kind, note) in force in this build."""
    if row.name in BY_NAME and row.kind != FLAG:
        return SAME, row.note or "same name, same meaning"
    missing = [t for t in row.targets if t not in BY_NAME]
    if row.kind == SAME:
        return REFUSED, "not available in this build" + (f" ({row.note})" if row.note else "")
    if row.kind == MAPPED and missing:
        return REFUSED, f"would map to {', '.join(missing)}, which this build does not have"
    return row.kind, row.note


# --- converters: value -> native settings; CheckError when the value has no equivalent --------------

def _to(name: str, fix: Callable[[Any], Any] = lambda v: v) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {name: fix(value)}


def _only(*harmless: str) -> Callable[[Any], dict[str, Any]]:
    """A setting whose listed values are what pasteserve does anyway; any other value is refused."""
    def convert(value: Any) -> dict[str, Any]:
        text = str(value).strip().lower()
        if isinstance(value, bool):
            text = "true" if value else "false"
        allowed = {w.lower() for w in harmless}
        if text in allowed or (text in ("0", "no", "off", "false") and "false" in allowed) \
                or (text in ("1", "yes", "on", "true") and "true" in allowed):
            return {}
        raise CheckError(f"only {' or '.join(harmless)} is supported")
    return convert


def _slash_prefix(value: Any) -> str:
    # waitress's slash_fixed_str: "/app/" and "app" both mean "/app"; "/" means no prefix.
    text = str(value).strip().strip("/")
    return "/" + text if text else ""


_GUNICORN_WORKERS = {"gunicorn.workers.sync.SyncWorker": "sync", "gunicorn.workers.geventlet.EventletWorker": "eventlet",
                     "gunicorn.workers.gthread.ThreadWorker": "gthread"}


def _worker_class(value: Any) -> dict[str, Any]:
    # Gunicorn's class paths for the workers we have; anything else meets the native check.
    text = str(value).strip()
    return {"worker_class": _GUNICORN_WORKERS.get(text.replace(":", "."), text)}


def _logconfig_json(value: Any) -> dict[str, Any]:
    try:
        with open(str(value)) as f:
            return {"logconfig_dict": json.load(f)}
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read a JSON logging config: {exc}") from None


def _threads(value: Any) -> dict[str, Any]:
    return {"threads": value}


# --- the table --------------------------------------------------------------------------------------

_SSL_HINT = "use certfile, keyfile, ca_certs, cert_reqs, ciphers and tls_min_version"
_STRICT = "the HTTP parser is strict by design (RFC 9112); requests it refuses get a 4xx"
_SYSLOG = "log to syslog with logconfig_dict and logging.handlers.SysLogHandler"
_DIRTY = "pasteserve has no dirty arbiters; run such work in a separate service"
_ASGI = "pasteserve serves WSGI only"
_H2 = "pasteserve speaks HTTP/1.1; terminate HTTP/2 at the proxy in front"
_CONTROL = "pasteserve has no control socket; signal the master (docs/signals.md)"


def _g(name: str, kind: str, note: str = "", targets: tuple[str, ...] = (), convert=None,
       flags: tuple[str, ...] = (), takes_value: bool = True) -> Row:
    return Row(GUNICORN, name, kind, note, targets, convert, flags, takes_value)


def _w(name: str, kind: str, note: str = "", targets: tuple[str, ...] = (), convert=None) -> Row:
    return Row(WAITRESS, name, kind, note, targets, convert)


GUNICORN_ROWS: tuple[Row, ...] = (
    _g("config", SAME, flags=("-c", "--config")),
    _g("wsgi_app", SAME),
    _g("bind", SAME, flags=("-b", "--bind")),
    _g("backlog", SAME, flags=("--backlog",)),
    _g("workers", SAME, "also from WEB_CONCURRENCY, as in Gunicorn", flags=("-w", "--workers")),
    _g("worker_class", MAPPED, "sync, gthread and eventlet, also as Gunicorn's class paths (gunicorn.workers.sync.SyncWorker); "
       "gevent, tornado and ASGI workers are refused", ("worker_class",), _worker_class, ("-k", "--worker-class")),
    _g("threads", SAME, "threads per worker", flags=("--threads",)),
    _g("worker_connections", SAME, flags=("--worker-connections",)),
    _g("max_requests", SAME, flags=("--max-requests",)),
    _g("max_requests_jitter", SAME, flags=("--max-requests-jitter",)),
    _g("timeout", SAME, flags=("-t", "--timeout")),
    _g("graceful_timeout", SAME, flags=("--graceful-timeout",)),
    _g("keepalive", SAME, "default 5 s (Gunicorn: 2 s); the sync worker keeps connections alive too",
       flags=("--keep-alive",)),
    _g("limit_request_line", SAME, flags=("--limit-request-line",)),
    _g("limit_request_fields", SAME, flags=("--limit-request-fields",)),
    _g("limit_request_field_size", SAME, flags=("--limit-request-field_size",)),
    _g("reload", SAME, "hupper restarts the whole server; implies preload_app", flags=("--reload",),
       takes_value=False),
    _g("reload_engine", IGNORED, "hupper chooses its own file watcher", flags=("--reload-engine",)),
    _g("reload_extra_files", SAME, flags=("--reload-extra-file",)),
    _g("spew", REFUSED, "no tracing switch; run under a debugger or `python -X importtime`", flags=("--spew",),
       takes_value=False),
    _g("check_config", SAME, flags=("--check-config",), takes_value=False),
    _g("print_config", SAME, flags=("--print-config",), takes_value=False),
    _g("preload_app", SAME, flags=("--preload",), takes_value=False),
    _g("sendfile", MAPPED, "wsgi.file_wrapper always uses os.sendfile when the file has a descriptor; "
       "only true is accepted", (), _only("true"), ("--no-sendfile",), takes_value=False),
    _g("reuse_port", SAME, flags=("--reuse-port",), takes_value=False),
    _g("chdir", SAME, flags=("--chdir",)),
    _g("daemon", SAME, flags=("-D", "--daemon"), takes_value=False),
    _g("raw_env", SAME, flags=("-e", "--env")),
    _g("pidfile", SAME, flags=("-p", "--pid")),
    _g("worker_tmp_dir", IGNORED, "the heartbeat lives in shared memory and needs no files",
       flags=("--worker-tmp-dir",)),
    _g("user", SAME, flags=("-u", "--user")),
    _g("group", SAME, flags=("-g", "--group")),
    _g("umask", SAME, flags=("-m", "--umask")),
    _g("initgroups", IGNORED, "workers that switch user always take that user's groups",
       flags=("--initgroups",), takes_value=False),
    _g("tmp_upload_dir", IGNORED, "request bodies are streamed to the app, never spooled to disk"),
    _g("secure_scheme_headers", SAME),
    _g("forwarded_allow_ips", SAME, "also from FORWARDED_ALLOW_IPS, as in Gunicorn", flags=("--forwarded-allow-ips",)),
    _g("accesslog", SAME, flags=("--access-logfile",)),
    _g("disable_redirect_access_to_syslog", IGNORED, "there is no syslog redirection to disable",
       flags=("--disable-redirect-access-to-syslog",), takes_value=False),
    _g("access_log_format", SAME, flags=("--access-logformat",)),
    _g("errorlog", SAME, flags=("--error-logfile", "--log-file")),
    _g("loglevel", SAME, flags=("--log-level",)),
    _g("capture_output", SAME, flags=("--capture-output",), takes_value=False),
    _g("logger_class", REFUSED, "configure the pasteserve.error and pasteserve.access loggers with "
       "logconfig_dict or the INI's [loggers]", flags=("--logger-class",)),
    _g("logconfig", SAME, flags=("--log-config",)),
    _g("logconfig_dict", SAME),
    _g("logconfig_json", MAPPED, "the file's JSON object becomes logconfig_dict", ("logconfig_dict",),
       _logconfig_json, ("--log-config-json",)),
    _g("syslog_addr", REFUSED, _SYSLOG, flags=("--log-syslog-to",)),
    _g("syslog", REFUSED, _SYSLOG, flags=("--log-syslog",), takes_value=False),
    _g("syslog_prefix", REFUSED, _SYSLOG, flags=("--log-syslog-prefix",)),
    _g("syslog_facility", REFUSED, _SYSLOG, flags=("--log-syslog-facility",)),
    _g("enable_stdio_inheritance", IGNORED, "stdio is inherited unless daemon is set",
       flags=("-R", "--enable-stdio-inheritance"), takes_value=False),
    _g("statsd_host", SAME, "StatsD metrics", flags=("--statsd-host",)),
    _g("dogstatsd_tags", SAME, "StatsD metrics", flags=("--dogstatsd-tags",)),
    _g("statsd_prefix", SAME, "StatsD metrics", flags=("--statsd-prefix",)),
    _g("enable_backlog_metric", SAME, "StatsD metrics", flags=("--enable-backlog-metric",), takes_value=False),
    _g("proc_name", SAME, flags=("-n", "--name")),
    _g("default_proc_name", IGNORED, "the process title defaults to the config file or app name"),
    _g("pythonpath", SAME, flags=("--pythonpath",)),
    _g("paste", FLAG, "`pasteserve --paste app.ini`, or `pasteserve_paster app.ini`", flags=("--paste", "--paster")),
    *(_g(hook, SAME, "server hook; receives Gunicorn-compatible objects") for hook in (
        "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init", "worker_int",
        "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit", "worker_exit",
        "nworkers_changed", "on_exit")),
    _g("ssl_context", REFUSED, f"no TLS context hook; {_SSL_HINT}"),
    _g("proxy_protocol", SAME, "PROXY protocol", flags=("--proxy-protocol",)),
    _g("proxy_allow_ips", SAME, "PROXY protocol", flags=("--proxy-allow-from",)),
    _g("protocol", MAPPED, "pasteserve speaks HTTP only (no uwsgi protocol)", (), _only("http"), ("--protocol",)),
    _g("uwsgi_allow_ips", IGNORED, "there is no uwsgi protocol to allow", flags=("--uwsgi-allow-from",)),
    _g("keyfile", SAME, flags=("--keyfile",)),
    _g("certfile", SAME, flags=("--certfile",)),
    _g("ssl_version", REFUSED, "deprecated in Gunicorn; use tls_min_version", ("tls_min_version",),
       flags=("--ssl-version",)),
    _g("cert_reqs", SAME, "client certificates (mutual TLS)", flags=("--cert-reqs",)),
    _g("ca_certs", SAME, "client certificates (mutual TLS)", flags=("--ca-certs",)),
    _g("suppress_ragged_eofs", MAPPED, "a TLS peer that closes without close_notify ends its connection "
       "quietly; only true is accepted", (), _only("true"), ("--suppress-ragged-eofs",), takes_value=False),
    _g("do_handshake_on_connect", IGNORED, "the worker always completes the TLS handshake before reading",
       flags=("--do-handshake-on-connect",), takes_value=False),
    _g("ciphers", SAME, "TLS cipher list", flags=("--ciphers",)),
    _g("http_protocols", MAPPED, f"{_H2}; only h1 is accepted", (), _only("h1"), ("--http-protocols",)),
    _g("http2_cleartext", MAPPED, f"{_H2}; only off is accepted", (), _only("off", "false"),
       ("--http2-cleartext",)),
    *(_g(name, REFUSED, _H2, flags=(flag,)) for name, flag in (
        ("http2_max_concurrent_streams", "--http2-max-concurrent-streams"),
        ("http2_initial_window_size", "--http2-initial-window-size"),
        ("http2_max_frame_size", "--http2-max-frame-size"),
        ("http2_max_header_list_size", "--http2-max-header-list-size"))),
    _g("raw_paste_global_conf", REFUSED, "give INI variables as `pasteserve_paster app.ini key=value`",
       flags=("--paste-global",)),
    *(_g(name, MAPPED, f"{_STRICT}; only false is accepted", (), _only("false"), (flag,), False) for name, flag in (
        ("permit_obsolete_folding", "--permit-obsolete-folding"),
        ("strip_header_spaces", "--strip-header-spaces"),
        ("permit_unconventional_http_method", "--permit-unconventional-http-method"),
        ("permit_unconventional_http_version", "--permit-unconventional-http-version"),
        ("casefold_http_method", "--casefold-http-method"))),
    _g("forwarder_headers", REFUSED, "SCRIPT_NAME comes from root_path; PATH_INFO only from the request",
       ("root_path",), flags=("--forwarder-headers",)),
    _g("header_map", MAPPED, "header names with `_` are always dropped; only drop is accepted", (),
       _only("drop"), ("--header-map",)),
    _g("asgi_loop", REFUSED, _ASGI, flags=("--asgi-loop",)),
    _g("asgi_lifespan", REFUSED, _ASGI, flags=("--asgi-lifespan",)),
    _g("asgi_disconnect_grace_period", REFUSED, _ASGI, flags=("--asgi-disconnect-grace-period",)),
    _g("websocket_max_message_size", REFUSED, "websockets belong to the app (eventlet worker); no server limit",
       flags=("--websocket-max-message-size",)),
    _g("http_parser", REFUSED, "pasteserve has one HTTP parser", flags=("--http-parser",)),
    _g("root_path", SAME, flags=("--root-path",)),
    *(_g(name, REFUSED, _DIRTY, flags=flags) for name, flags in (
        ("dirty_apps", ("--dirty-app",)), ("dirty_workers", ("--dirty-workers",)),
        ("dirty_timeout", ("--dirty-timeout",)), ("dirty_threads", ("--dirty-threads",)),
        ("dirty_graceful_timeout", ("--dirty-graceful-timeout",)), ("on_dirty_starting", ()),
        ("dirty_post_fork", ()), ("dirty_worker_init", ()), ("dirty_worker_exit", ()))),
    _g("control_socket", REFUSED, _CONTROL, flags=("--control-socket",)),
    _g("control_socket_mode", REFUSED, _CONTROL, flags=("--control-socket-mode",)),
    _g("control_socket_disable", MAPPED, f"{_CONTROL}; only true is accepted", (), _only("true"),
       ("--no-control-socket",), takes_value=False),
)

WAITRESS_ROWS: tuple[Row, ...] = (
    _w("host", MAPPED, "with port: bind HOST:PORT; waitress's defaults apply (host 0.0.0.0, port 8080), "
       "so `port` alone listens on all interfaces", ("bind",)),
    _w("port", MAPPED, "with host: bind HOST:PORT (see host)", ("bind",)),
    _w("ipv4", MAPPED, "with `*:PORT` in listen: false leaves out 0.0.0.0", ("bind",)),
    _w("ipv6", MAPPED, "with `*:PORT` in listen: false leaves out [::]", ("bind",)),
    _w("listen", MAPPED, "bind: several addresses separated by spaces; `*:PORT` is 0.0.0.0:PORT and [::]:PORT",
       ("bind",)),
    _w("unix_socket", MAPPED, "bind unix:PATH", ("bind",)),
    _w("unix_socket_perms", SAME, "mode of the unix socket file"),
    _w("sockets", REFUSED, "Python socket objects cannot come from an INI; use bind fd://N", ("bind",)),
    _w("threads", MAPPED, "threads per worker (waitress's default of 4 applies only when set)", ("threads",),
       _threads),
    _w("trusted_proxy", MAPPED, "forwarded_allow_ips: X-Forwarded-Proto (secure_scheme_headers) counts from these "
       "peers, as in waitress without trusted_proxy_headers; `*` for any peer", ("forwarded_allow_ips",),
       _to("forwarded_allow_ips")),
    _w("trusted_proxy_count", SAME, "proxy headers from trusted proxies"),
    _w("trusted_proxy_headers", SAME, "proxy headers from trusted proxies"),
    _w("log_untrusted_proxy_headers", IGNORED, "untrusted proxy headers are dropped without a log line"),
    _w("clear_untrusted_proxy_headers", SAME, "proxy headers from trusted proxies"),
    _w("url_scheme", SAME, "wsgi.url_scheme"),
    _w("url_prefix", MAPPED, "root_path (SCRIPT_NAME)", ("root_path",), _to("root_path", _slash_prefix)),
    _w("backlog", SAME),
    _w("recv_bytes", IGNORED, "reads are sized by the HTTP engine"),
    _w("send_bytes", IGNORED, "writes go to the socket unbuffered"),
    _w("outbuf_overflow", IGNORED, "responses are not spooled to disk"),
    _w("outbuf_high_watermark", IGNORED, "responses are written straight to the socket"),
    _w("inbuf_overflow", IGNORED, "request bodies are streamed to the app, never spooled to disk"),
    _w("connection_limit", MAPPED, "worker_connections (per worker process)", ("worker_connections",),
       _to("worker_connections")),
    _w("cleanup_interval", IGNORED, "idle connections are swept by each worker's own clock"),
    _w("channel_timeout", MAPPED, "keepalive: idle connections close after this many seconds", ("keepalive",),
       _to("keepalive")),
    _w("log_socket_errors", IGNORED, "socket errors of a client are logged at debug level"),
    _w("max_request_header_size", REFUSED, "limit the head with limit_request_line, limit_request_fields "
       "and limit_request_field_size", ("limit_request_field_size",)),
    _w("max_request_body_size", MAPPED, "limit_request_body (waitress's default is 1 GiB; pasteserve's "
       "is no limit)", ("limit_request_body",), _to("limit_request_body")),
    _w("expose_tracebacks", SAME, "tracebacks in 500 pages"),
    _w("ident", SAME, "the Server response header"),
    _w("asyncore_loop_timeout", IGNORED, "there is no asyncore loop"),
    _w("asyncore_use_poll", IGNORED, "there is no asyncore loop"),
    _w("channel_request_lookahead", IGNORED, "pipelined requests are read one at a time"),
    _w("server_name", IGNORED, "SERVER_NAME comes from the Host header or the listening address"),
)

ROWS: dict[str, dict[str, Row]] = {
    GUNICORN: {r.name: r for r in GUNICORN_ROWS},
    WAITRESS: {r.name: r for r in WAITRESS_ROWS},
}
# waitress's keys that together make `bind`.
_BIND_KEYS = ("host", "port", "listen", "unix_socket", "ipv4", "ipv6")


def lookup(name: str, prefer: str = WAITRESS, only: bool = False) -> Row | None:
    """The row for `name`; `prefer` decides when both servers know the name, `only` ignores the other."""
    other = GUNICORN if prefer == WAITRESS else WAITRESS
    return ROWS[prefer].get(name) or (None if only else ROWS[other].get(name))


def known(name: str) -> bool:
    return name in BY_NAME or lookup(name) is not None


def suggest(key: str) -> str:
    """"unknown option", with the closest real equivalent when there is one."""
    import difflib   # here: only a typo needs it, and imported once it would stay in every worker

    norm = key.strip().replace("-", "_").lower()
    names = list(BY_NAME) + [n for rows in ROWS.values() for n in rows]
    close = [norm] if norm in names else difflib.get_close_matches(norm, names, n=1, cutoff=0.75)
    if not close:
        return "unknown option"
    return f'unknown option; did you mean "{_equivalent(close[0])}"?'


def _equivalent(name: str) -> str:
    # The native setting a foreign name stands for, when this build has it.
    row = lookup(name)
    if name in BY_NAME or row is None or not row.targets or row.targets[0] not in BY_NAME:
        return name
    return row.targets[0]


# --- translation -------------------------------------------------------------------------------------

@dataclass
class Translation:
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    via: dict[str, str] = field(default_factory=dict)     # native name -> the foreign keys it came from


def translate(raw: Mapping[str, Any], prefer: str = WAITRESS, config_file: bool = False) -> Translation:
    """Native settings for `raw`, whose keys may be native, Gunicorn's or waitress's names.

    A Python config file (`config_file`) speaks Gunicorn only, and names the table does not know
    are its own helpers, left alone (`port = 8000` there is a variable, not waitress's port).
    """
    out = Translation()
    raw = dict(raw)
    bind_keys = {} if config_file else {k: raw.pop(k) for k in _BIND_KEYS if k in raw}
    if bind_keys and not set(bind_keys) - {"ipv4", "ipv6"}:
        # Alone they only narrow waitress's default listen (*:8080); here bind has its own default.
        out.notices += [f"{k} = {v}: waitress's setting, ignored: it only matters with listen = *:PORT"
                        for k, v in bind_keys.items()]
        bind_keys = {}
    if bind_keys:
        if "bind" in raw:
            out.problems.append(Problem("bind", raw["bind"],
                                        f"give either bind or {'/'.join(bind_keys)} (waitress's spelling), not both"))
        else:
            try:
                out.values["bind"] = waitress_bind(bind_keys)
                out.via["bind"] = " + ".join(bind_keys)
            except CheckError as exc:
                key = next(iter(bind_keys))
                out.problems.append(Problem(key, bind_keys[key], str(exc)))
    for key, value in raw.items():
        row = lookup(key, prefer, only=config_file)
        if key in BY_NAME:
            # Same name; a converter may still translate a foreign spelling of the value.
            converted = row.convert(value) if row and row.kind == MAPPED and row.convert else {key: value}
            _put(out, key, converted[key], key)
            continue
        if row is None:
            if not config_file:
                out.problems.append(Problem(key, value, suggest(key)))
            elif "did you mean" in suggest(key) and not callable(value):
                # The file's own name, unless it is a typo: say so, and leave it alone.
                out.notices.append(f"{key} = {value!r}: not a setting, left alone; {suggest(key).partition('; ')[2]}")
            continue
        kind, note = status(row)
        if kind == MAPPED and row.convert is not None:
            try:
                converted = row.convert(value)
            except CheckError as exc:
                out.problems.append(Problem(key, value, f"{exc} ({row.server}'s {key}: {note})"))
                continue
            for target, new in converted.items():
                _put(out, target, new, key)
        elif kind == IGNORED:
            out.notices.append(f"{key} = {value}: {row.server}'s setting, ignored: {note}")
        elif kind == FLAG:
            out.problems.append(Problem(key, value, f"a command-line flag here: {note}"))
        else:
            out.problems.append(Problem(key, value, f"not supported: {note}"))
    return out


def _put(out: Translation, name: str, value: Any, key: str) -> None:
    if name in out.values:
        first = out.via.get(name, name)
        out.problems.append(Problem(key, value, f"sets {name}, as {first} does: give only one of them"))
        return
    out.values[name] = value
    if key != name:
        out.via[name] = key


def waitress_bind(keys: Mapping[str, Any]) -> list[str]:
    """`bind` from waitress's host, port, listen, unix_socket, ipv4 and ipv6, with waitress's rules."""
    ipv4 = check_bool(keys.get("ipv4", True))
    ipv6 = check_bool(keys.get("ipv6", True))
    if not (ipv4 or ipv6):
        raise CheckError("ipv4 and ipv6 cannot both be false")
    if "unix_socket" in keys:
        if {"host", "port", "listen"} & set(keys):
            raise CheckError("unix_socket serves only the unix socket: drop host, port and listen")
        return [f"unix:{str(keys['unix_socket']).strip()}"]
    if "listen" in keys and ({"host", "port"} & set(keys)):
        raise CheckError("host or port may not be set if listen is set (as in waitress)")
    if "listen" in keys:
        words = keys["listen"] if isinstance(keys["listen"], (list, tuple)) else str(keys["listen"]).split()
    else:
        words = [f"{_host(keys.get('host', '0.0.0.0'))}:{check_int(keys.get('port', 8080), 0, 65535)}"]
    binds: list[str] = []
    for word in words:
        host, sep, port = str(word).strip().rpartition(":")
        if not sep:
            host, port = word, "8080"      # waitress: a bare host listens on its default port
        check_int(port, 0, 65535)
        if host.strip("[]") in ("*", ""):
            binds += ([f"0.0.0.0:{port}"] if ipv4 else []) + ([f"[::]:{port}"] if ipv6 else [])
        else:
            binds.append(f"{_host(host)}:{port}")
    return binds


def _host(host: Any) -> str:
    text = str(host).strip()
    if text.startswith("["):
        return text
    try:
        return f"[{text}]" if ipaddress.ip_address(text).version == 6 else text
    except ValueError:
        return text


# --- entry points for the configuration sources ------------------------------------------------------

def settings_from_mapping(raw: Mapping[str, Any], origin: str, source: str, base: Settings | None = None,
                          prefer: str = WAITRESS, key_sources: Mapping[str, str] | None = None) -> Settings:
    """settings.settings_from_mapping for a mapping that may use Gunicorn's or waitress's names.

    `key_sources` tells where single keys came from, when that is not `source` ([DEFAULT], ...).
    """
    return _layer(translate(raw, prefer), origin, source, base, key_sources or {})


def _layer(out: Translation, origin: str, source: str, base: Settings | None,
           key_sources: Mapping[str, str]) -> Settings:
    sources = {}
    for name in out.values:
        via = out.via.get(name, name)
        first = via.split(" + ")[0]
        sources[name] = key_sources.get(first, source) + (f" ({via})" if via != name else "")
    return _native_settings(out.values, origin, sources, base, out.problems,
                            [f"{origin}: {n}" for n in out.notices])


def load_config_file_settings(path: str, base: Settings | None = None) -> Settings:
    """Options from a Python config file (gunicorn.conf.py): native and Gunicorn names; helpers left alone."""
    from .hooks import load_config_file

    namespace = load_config_file(path)
    out = translate(namespace, prefer=GUNICORN, config_file=True)
    source = f"config file {path}"
    return _layer(out, source, source, base, {})


def environment_settings(environ: Mapping[str, str]) -> Settings | None:
    """The lowest layer above the defaults, as in Gunicorn: WEB_CONCURRENCY is `workers`, PORT makes
    `bind` 0.0.0.0:$PORT (Heroku and Cloud Run set it), FORWARDED_ALLOW_IPS is
    `forwarded_allow_ips` (container images set it for the proxy in front); any other source wins
    over them."""
    raw, sources = {}, {}
    for var, name, value in (("WEB_CONCURRENCY", "workers", environ.get("WEB_CONCURRENCY")),
                             ("PORT", "bind", f"0.0.0.0:{environ.get('PORT', '').strip()}"),
                             ("FORWARDED_ALLOW_IPS", "forwarded_allow_ips", environ.get("FORWARDED_ALLOW_IPS"))):
        if environ.get(var, "").strip():
            raw[name], sources[name] = value, f"environment {var}"
    if not raw:
        return None
    return _native_settings(raw, "the environment", sources)


def cli_extra_args(environ: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """Flags from PASTESERVE_CMD_ARGS and GUNICORN_CMD_ARGS (in that order of precedence)."""
    return [(var, shlex.split(environ[var])) for var in ("PASTESERVE_CMD_ARGS", "GUNICORN_CMD_ARGS")
            if environ.get(var, "").strip()]


def add_gunicorn_flags(parser: argparse.ArgumentParser, taken: set[str]) -> None:
    """Gunicorn's flags that pasteserve has no flag of its own for: they translate (or are refused)
    through the table, like the same names in a config file. Hidden from --help."""
    for row in GUNICORN_ROWS:
        flags = [f for f in row.flags if f not in taken]
        if not flags or row.name in BY_NAME or row.kind == FLAG:
            continue
        if row.takes_value:
            parser.add_argument(*flags, dest="gunicorn:" + row.name, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            # --no-sendfile and --no-control-socket say the opposite of their setting's name.
            const = "false" if flags[0].startswith("--no-") and row.name != "control_socket_disable" else "true"
            parser.add_argument(*flags, dest="gunicorn:" + row.name, action="store_const", const=const,
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        taken.update(flags)


def gunicorn_flag_values(namespace: argparse.Namespace) -> dict[str, Any]:
    return {k.partition(":")[2]: v for k, v in vars(namespace).items() if k.startswith("gunicorn:")}


# --- migration guides -----------------------------------------------------------------------------------

_KIND_WORDS = {SAME: "same", MAPPED: "mapped", IGNORED: "ignored", REFUSED: "refused", FLAG: "flag"}

_GUIDE_INTRO = {
    GUNICORN: """\
# Migrating from Gunicorn

Generated from `pasteserve/compat.py` by `python -m pasteserve.compat gunicorn > docs/migrating-from-gunicorn.md`;
do not edit by hand.

Replace the command name: `gunicorn -c gunicorn.conf.py myapp:app` becomes
`pasteserve -c gunicorn.conf.py myapp:app`. The config file, the flags, `GUNICORN_CMD_ARGS` and the
server hooks keep working: each Gunicorn setting below is the *same* here, *mapped* onto a
pasteserve setting, accepted and *ignored* with one log line (it has no meaning here), or
*refused* with a message that names what to use instead. Nothing is dropped silently. Names in a
config file that are no Gunicorn setting (helpers, imports) are left alone. As in Gunicorn,
`./gunicorn.conf.py` is read when no `-c` is given, and `-c python:package.module` imports the
config from a module.

`pasteserve --check-config` validates everything and loads the app (exit 0; 2 for a bad setting;
3 when the app cannot load); `pasteserve --print-config` prints every setting, its value and where it
came from.

Where a value comes from, lowest first (a later source wins):

1. the default;
2. the environment: `WEB_CONCURRENCY` sets `workers`, `PORT` sets `bind` to `0.0.0.0:$PORT`,
   `FORWARDED_ALLOW_IPS` sets `forwarded_allow_ips`;
3. the Python config file (`-c FILE`, `config =` in the INI, else `./gunicorn.conf.py`);
4. the INI's `[server:main]` section (with `--paste app.ini`);
5. flags in `GUNICORN_CMD_ARGS`, then flags in `PASTESERVE_CMD_ARGS` (read by the `pasteserve` command);
6. flags on the command line.

Hooks get objects with the attributes Gunicorn's documented examples use: the arbiter has `log`,
`cfg`, `pid`, `num_workers` and `WORKERS`; a worker `log`, `pid`, `ppid`, `age`, `cfg` and `alive`;
a request `method`, `uri`, `path`, `query`, `fragment`, `version`, `headers` (a list of
(UPPER-NAME, value)) and `scheme`; a response `status`, `status_code`, `headers` and `sent`.
A logging config (INI `[loggers]`, `logconfig`, `logconfig_dict`) that configures `gunicorn.error`
or `gunicorn.access` configures `pasteserve.error` / `pasteserve.access` instead, unless it
configures those itself; the log says so once.
""",
    WAITRESS: """\
# Migrating from waitress

Generated from `pasteserve/compat.py` by `python -m pasteserve.compat waitress > docs/migrating-from-waitress.md`;
do not edit by hand.

In the INI (a Pyramid starter's `production.ini`), change one line of `[server:main]`:

```ini
[server:main]
use = egg:pasteserve#main
listen = localhost:6543
```

The rest of the section keeps working: each waitress key below is the *same* here, *mapped* onto
a pasteserve setting, accepted and *ignored* with one log line (it has no meaning in a pre-fork
server), or *refused* with a message that names what to use instead. `pserve production.ini` and
`pasteserve_paster production.ini` both serve it; `pserve --reload` restarts it on every change.

As in waitress, `host` defaults to `0.0.0.0` and `port` to `8080`: a section with only
`port = 6543` listens on all interfaces. `listen = *:6543` listens on `0.0.0.0:6543` and
`[::]:6543` (`ipv4 = false` or `ipv6 = false` leaves one out). `waitress-serve` flags are the same
names with dashes (`--url-prefix` is `url_prefix`); with `pasteserve` use its own flags
(`pasteserve --help`). Where waitress runs threads in one process, pasteserve forks `workers`
processes (default 1). The environment's `WEB_CONCURRENCY` (workers), `PORT` (bind
`0.0.0.0:$PORT`) and `FORWARDED_ALLOW_IPS` apply when the INI does not set them.
""",
}


# What the guides show as a real report: keys of each kind, and a typo.
_EXAMPLES = {
    GUNICORN: ("config file gunicorn.conf.py", {"workers": 4, "worker_tmp_dir": "/dev/shm", "syslog": True,
                                                "max_request": 1000}),
    WAITRESS: ("file production.ini, section [server:main]", {"listen": "*:6543", "asyncore_use_poll": "true",
                                                              "max_request_header_size": "262144",
                                                              "url_prefx": "/shop"}),
}


def _example(server: str) -> list[str]:
    origin, raw = _EXAMPLES[server]
    out = translate(raw, prefer=server, config_file=server == GUNICORN)
    text = [f"{origin}: {n}" for n in out.notices]
    try:
        _native_settings(out.values, origin, origin, None, out.problems)
    except ConfigError as exc:
        text.append(f"pasteserve: {exc}")
    lines = "\n".join(f"{k} = {v!r}" if server == GUNICORN else f"{k} = {v}" for k, v in raw.items())
    return ["For example, these lines:", "", "```", lines, "```", "",
            "give this: the problems stop the start (every one listed, exit status 2); once they are fixed, the "
            "notices are logged at start-up:",
            "", "```", *text, "```", ""]


def render_guide(server: str) -> str:
    """docs/migrating-from-<server>.md, generated from the table (a test fails when the file is stale)."""
    rows = GUNICORN_ROWS if server == GUNICORN else WAITRESS_ROWS
    foreign = "Gunicorn" if server == GUNICORN else "waitress"
    head = f"| {foreign} setting | flag | here | pasteserve | notes |" if server == GUNICORN \
        else f"| {foreign} key | here | pasteserve | notes |"
    out = [_GUIDE_INTRO[server], *_example(server), "## Every setting", "", head,
           "|---|---|---|---|---|" if server == GUNICORN else "|---|---|---|---|"]
    for row in rows:
        kind, note = status(row)
        ours = _ours(row, kind)
        cells = [f"`{row.name}`"]
        if server == GUNICORN:
            cells.append(", ".join(f"`{f}`" for f in row.flags) or "—")
        cells += [_KIND_WORDS[kind], ours, note.replace("|", "\\|")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _ours(row: Row, kind: str) -> str:
    if kind == SAME:
        own = BY_NAME[row.name].cli if row.name in BY_NAME else ()
        return f"`{row.name}`" + (f" ({', '.join(f'`{f}`' for f in own)})" if own else "")
    if kind == MAPPED:
        # No target: only the value pasteserve always has is accepted.
        return ", ".join(f"`{t}`" for t in row.targets) or "built in"
    if kind == FLAG:
        return ", ".join(f"`{f}`" for f in row.flags)
    if kind == REFUSED and row.targets and all(t in BY_NAME for t in row.targets):
        return "use " + ", ".join(f"`{t}`" for t in row.targets)
    return "—"


if __name__ == "__main__":
    import sys

    print(render_guide(sys.argv[1] if len(sys.argv) > 1 else GUNICORN), end="")
