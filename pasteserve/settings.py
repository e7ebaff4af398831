"""Every server option, declared once.

The table `SETTINGS` is the single source for: the configobj spec that validates an INI's
``[server:...]`` section, the ``pasteserve`` command-line flags, and ``docs/settings.md``.
Each option's check is a plain function from a string (or an already-typed value from a Python
config file) to a typed value, raising `CheckError` with what is allowed. configobj calls the
same functions by name, so the INI and the CLI can never disagree about what a value means.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from configobj import ConfigObj, flatten_errors, get_extra_values
from validate import ValidateError, Validator

from .hooks import HOOK_ARGS, HOOK_NAMES
from .http.proxy_protocol import MODES
from .logs import DEFAULT_ACCESS_LOG_FORMAT, check_access_log_format
from .metrics import parse_address as parse_statsd_address
from .proxy import check_trusted_headers
from .sockets import CERT_REQS, TLS_VERSIONS, parse_bind


class CheckError(ValidateError):
    """A value that does not fit its option; the message says what is allowed."""


# --- checks: str (or typed value) -> typed value -------------------------------------------

_TRUE = {"true", "yes", "on", "y", "t", "1"}
_FALSE = {"false", "no", "off", "n", "f", "0"}


def check_bool(value: Any) -> bool:
    # The same words PasteDeploy's asbool accepts, so INI files keep meaning what they meant.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CheckError("expected a boolean: true/false, yes/no, on/off, 1/0")


def _bound(text: Any) -> float | None:
    # configobj hands spec arguments over as strings.
    return None if text in (None, "None") else float(text)


def check_int(value: Any, min: Any = None, max: Any = None) -> int:
    min, max = _bound(min), _bound(max)
    if isinstance(value, bool):
        raise CheckError("expected a whole number")
    try:
        number = value if isinstance(value, int) else int(str(value).strip(), 10)
    except ValueError:
        raise CheckError(_range_text("a whole number", min, max)) from None
    if (min is not None and number < min) or (max is not None and number > max):
        raise CheckError(_range_text("a whole number", min, max))
    return number


def check_float(value: Any, min: Any = None, max: Any = None) -> float:
    min, max = _bound(min), _bound(max)
    try:
        number = float(value) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number != number:
        raise CheckError(_range_text("a number", min, max))
    if (min is not None and number < min) or (max is not None and number > max):
        raise CheckError(_range_text("a number", min, max))
    return number


def _range_text(kind: str, min: float | None, max: float | None) -> str:
    min, max = (None if b is None else f"{b:g}" for b in (min, max))
    if min is not None and max is not None:
        return f"expected {kind} from {min} to {max}"
    if min is not None:
        return f"expected {kind} >= {min}"
    return f"expected {kind}"


def check_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def check_choice(value: Any, *choices: str) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise CheckError("expected one of: " + ", ".join(choices))
    return text


def check_octal(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        try:
            number = int(text, 0) if text.startswith("0x") else int(text.removeprefix("0o"), 8)
        except ValueError:
            raise CheckError("expected an octal mode such as 022 or 0o077") from None
    if not 0 <= number <= 0o777:
        raise CheckError("expected an octal mode from 0 to 0777")
    return number


def check_user(value: Any) -> str | None:
    # Resolved here, not in each worker: a typo would otherwise kill every worker at boot.
    import pwd

    text = check_str(value)
    if text is not None and not text.isdigit():
        try:
            pwd.getpwnam(text)
        except KeyError:
            raise CheckError(f"no user named {text!r} on this system; expected a user name or a uid") from None
    return text


def check_group(value: Any) -> str | None:
    import grp

    text = check_str(value)
    if text is not None and not text.isdigit():
        try:
            grp.getgrnam(text)
        except KeyError:
            raise CheckError(f"no group named {text!r} on this system; expected a group name or a gid") from None
    return text


def _words(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [w for w in str(value).replace(",", " ").split() if w]


def check_bind(value: Any) -> list[str]:
    binds = _words(value)
    if not binds:
        raise CheckError("expected one or more addresses: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N")
    for bind in binds:
        try:
            parse_bind(bind)
        except ValueError as exc:
            raise CheckError(f"{exc}; expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N") from None
    return binds


def check_statsd(value: Any) -> str | None:
    text = check_str(value)
    if text is not None:
        try:
            parse_statsd_address(text)
        except ValueError as exc:
            raise CheckError(f"{exc}; expected HOST:PORT, [IPV6]:PORT or unix:PATH") from None
    return text


def check_ips(value: Any) -> list[str]:
    ips = _words(value)
    for ip in ips:
        if ip == "*":
            continue
        try:
            ipaddress.ip_network(ip, strict=False)
        except ValueError:
            raise CheckError(f"{ip!r} is not an IP address or network; expected addresses, networks or *") from None
    return ips


def check_proxy_headers(value: Any) -> list[str]:
    try:
        return check_trusted_headers(_words(value))
    except ValueError as exc:
        raise CheckError(str(exc)) from None


def check_proxy_protocol(value: Any) -> str:
    # Gunicorn before 24 had a boolean; true now means "either version".
    text = str(value).strip().lower()
    if text in MODES:
        return text
    try:
        return "auto" if check_bool(value) else "off"
    except CheckError:
        raise CheckError("expected one of: " + ", ".join(MODES) + " (or true/false)") from None


def check_scheme_headers(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k).upper(): str(v) for k, v in value.items()}
    headers = {}
    for word in _words(value):
        name, sep, expected = word.partition("=")
        if not sep or not name or not expected:
            raise CheckError("expected HEADER=VALUE pairs, e.g. X-FORWARDED-PROTO=https")
        headers[name.strip().upper()] = expected.strip()
    return headers


def check_ident(value: Any) -> str | None:
    text = check_str(value)
    if text is not None and not all(" " <= c <= "~" for c in text):
        raise CheckError("expected printable ASCII for the Server header, such as myapp/1.0")
    return text


def check_cert_reqs(value: Any) -> int:
    # int() first: a config file may say ssl.CERT_REQUIRED, whose str() differs across Pythons.
    text = str(int(value)) if isinstance(value, int) and not isinstance(value, bool) else str(value).strip().lower()
    if text in CERT_REQS:
        return int(CERT_REQS[text])
    if text in {str(int(v)) for v in CERT_REQS.values()}:
        return int(text)
    raise CheckError("expected 0/none, 1/optional or 2/required")


def check_callable(value: Any) -> Callable | str | None:
    # A dotted name is loaded later (hooks.Hooks), after the app's path is importable.
    if value is None or callable(value):
        return value
    text = str(value).strip()
    if not text:
        return None
    parts = text.replace(":", ".").split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise CheckError("expected a dotted name such as myapp.hooks:post_fork")
    return text


def check_env(value: Any) -> list[str]:
    pairs = _env_words(value)
    for pair in pairs:
        name, sep, _ = pair.partition("=")
        if not sep or not name.strip():
            raise CheckError(f"{pair!r} is not KEY=VALUE; expected variables such as DJANGO_SETTINGS_MODULE=mysite.settings")
    return pairs


def _env_words(value: Any) -> list[str]:
    # Values may contain spaces only in a list (config file, repeated -e); INI text splits on blanks.
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return str(value).split()


def check_paths(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(",") if p.strip()]


def check_dict(value: Any) -> dict:
    # A Python config file gives a dict; an INI or a flag gives JSON text.
    if isinstance(value, Mapping):
        return dict(value)
    import json

    try:
        parsed = json.loads(str(value))
    except ValueError as exc:
        raise CheckError(f"expected a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise CheckError("expected a JSON object")
    return parsed


def check_access_format(value: Any) -> str:
    text = str(value)
    problem = check_access_log_format(text)
    if problem:
        raise CheckError(problem)
    return text


def check_loglevel(value: Any) -> str:
    return check_choice(value, "debug", "info", "warning", "error", "critical")


# --- the table --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    name: str
    check: str                      # name of a function in CHECKS
    default: Any
    doc: str
    section: str
    cli: tuple[str, ...] = ()
    args: tuple = ()                # extra arguments to the check (min/max, choices)
    meta: str = "VALUE"
    repeat: bool = False            # the flag may be given several times (-b, -e)

    def parse(self, value: Any) -> Any:
        return CHECKS[self.check](value, *self.args)

    def spec_line(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        return f"{self.name} = {self.check}({args})"


CHECKS: dict[str, Callable[..., Any]] = {
    "bool": check_bool,
    "int": check_int,
    "float": check_float,
    "str": check_str,
    "choice": check_choice,
    "octal": check_octal,
    "user": check_user,
    "group": check_group,
    "bind": check_bind,
    "ips": check_ips,
    "statsd": check_statsd,
    "scheme_headers": check_scheme_headers,
    "proxy_headers": check_proxy_headers,


    "proxy_protocol": check_proxy_protocol,
    "callable": check_callable,
    "ident": check_ident,
    "cert_reqs": check_cert_reqs,
    "env": check_env,
    "paths": check_paths,
    "dict": check_dict,
    "access_format": check_access_format,
    "loglevel": check_loglevel,
}

_S = Setting
SETTINGS: tuple[Setting, ...] = (
    _S("config", "str", None, "A Python file (or `python:package.module`) whose top-level names set options and hooks "
       "(like gunicorn.conf.py). Values in the INI or on the command line win.", "Config", ("-c", "--config"), meta="FILE"),
    _S("wsgi_app", "str", None, "The app as MODULE:CALLABLE when the command line names none (Gunicorn's "
       "`wsgi_app`).", "Config", meta="MODULE:CALLABLE"),
    _S("check_config", "bool", False, "Check the configuration and load the app, then exit: 0 when all is "
       "well, 2 for a bad setting, 3 when the app cannot be loaded.", "Config", ("--check-config",)),
    _S("print_config", "bool", False, "Print every setting with its value and where it came from, then exit.",
       "Config", ("--print-config",)),
    _S("bind", "bind", ["127.0.0.1:8000"], "Addresses to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; "
       "several separated by spaces or commas. The INI also accepts `host` + `port` and `listen`.",
       "Server socket", ("-b", "--bind"), meta="ADDRESS", repeat=True),
    _S("backlog", "int", 2048, "Pending connections the kernel queues per listener.", "Server socket",
       ("--backlog",), (1, 65535), "INT"),
    _S("reuse_port", "bool", False, "Set SO_REUSEPORT on listeners.", "Server socket", ("--reuse-port",)),
    _S("workers", "int", 1, "Number of worker processes.", "Worker processes", ("-w", "--workers"), (1, 1000), "INT"),
    _S("worker_class", "choice", "sync", "`sync`: one request at a time per process (`threads` at a time with "
       "`threads` > 1); `gthread`: the sync worker with `threads` app threads (Gunicorn's name); `eventlet`: green "
       "threads, many concurrent connections per process.", "Worker processes", ("-k", "--worker-class"),
       ("sync", "gthread", "eventlet"), "CLASS"),
    _S("threads", "int", 1, "Sync worker: app threads per worker process, each running one request at a time "
       "(Gunicorn's gthread, waitress's thread pool). The app must be thread-safe when > 1. Not for eventlet.",
       "Worker processes", ("--threads",), (1, 1000), "INT"),
    _S("worker_connections", "int", 1000, "Eventlet worker: most concurrent connections per worker; accepting "
       "pauses at the limit. Sync worker: most idle keep-alive connections a worker holds (with threads: "
       "idle, queued and running ones).",
       "Worker processes", ("--worker-connections",), (1, 1000000), "INT"),
    _S("timeout", "float", 30.0, "A worker silent for this many seconds (with threads: one thread stuck this long in "
       "one request) is aborted and replaced; also the socket "
       "timeout while a request runs. 0 disables the liveness check.", "Worker processes", ("-t", "--timeout"), (0, None), "SECONDS"),
    _S("graceful_timeout", "float", 30.0, "On TERM or reload, seconds workers get to finish in-flight requests "
       "before they are killed.", "Worker processes", ("--graceful-timeout",), (0, None), "SECONDS"),
    _S("keepalive", "float", 5.0, "Seconds an idle keep-alive connection is kept open; 0 closes the connection "
       "after every response.", "Worker processes", ("--keep-alive",), (0, 3600), "SECONDS"),
    _S("header_timeout", "float", 10.0, "Seconds a client gets to send a whole request head once it started; "
       "then it is answered 408 and closed.", "Worker processes", ("--header-timeout",), (0.1, 3600), "SECONDS"),
    _S("max_requests", "int", 0, "A worker retires after this many requests (0: never), finishing the current one.",
       "Worker processes", ("--max-requests",), (0, None), "INT"),
    _S("max_requests_jitter", "int", 0, "Add a random 0..N to max_requests per worker, so workers don't retire together.",
       "Worker processes", ("--max-requests-jitter",), (0, None), "INT"),
    _S("limit_request_line", "int", 8190, "Longest request line in bytes; longer gets 414. 0: no limit of its "
       "own (as Gunicorn; the line still stops at 1 MiB).",
       "Security", ("--limit-request-line",), (0, 65535), "INT"),
    _S("limit_request_fields", "int", 100, "Most header fields in a request; more gets 431. 0: the maximum, "
       "32768 (what Gunicorn 27's code does).", "Security", ("--limit-request-fields",), (0, 32768), "INT"),
    _S("limit_request_field_size", "int", 8190, "Longest header field line in bytes; longer gets 431. 0: the "
       "default, 8190 (what Gunicorn 27's code does; its docs say unlimited). A whole head stops at 16 MiB.",
       "Security", ("--limit-request-field_size", "--limit-request-field-size"), (0, 65535), "INT"),
    _S("limit_request_body", "int", 0, "Largest request body in bytes (0: no limit). A larger Content-Length "
       "gets 413 before any body byte is read; a chunked body growing past it gets 413 and the connection "
       "closes; the app never reads more than this.", "Security", ("--limit-request-body",), (0, None), "BYTES"),
    _S("limit_head_buffer", "int", 16 << 20, "Most bytes one worker buffers for request heads still arriving, "
       "over all its connections (0: unlimited); over it, the largest unfinished heads get 431 and close.",
       "Security", ("--limit-head-buffer",), (0, None), "BYTES"),
    _S("forwarded_allow_ips", "ips", ["127.0.0.1", "::1"], "The trusted proxies: peers whose "
       "secure_scheme_headers and trusted_proxy_headers are believed. Addresses, networks (`10.0.0.0/8`, "
       "`fd00::/8`) or `*` for all. Unix socket peers are always trusted.", "Security",
       ("--forwarded-allow-ips",), meta="IPS"),
    _S("secure_scheme_headers", "scheme_headers", {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
       "X-FORWARDED-SSL": "on"}, "Headers from a trusted proxy that mark a request as https, as HEADER=VALUE pairs.",
       "Security", (), meta="PAIRS"),
    _S("trusted_proxy_headers", "proxy_headers", [], "Forwarding headers believed from a trusted proxy, as in "
       "waitress: `x-forwarded-for` (REMOTE_ADDR, REMOTE_PORT), `x-forwarded-host` (HTTP_HOST, SERVER_NAME), "
       "`x-forwarded-proto` (wsgi.url_scheme), `x-forwarded-port` (SERVER_PORT), `x-forwarded-by`, or "
       "`forwarded` (RFC 7239, all of those; not together with the x-forwarded-* ones). A malformed one gets 400.",
       "Security", ("--trusted-proxy-headers",), meta="NAMES"),
    _S("trusted_proxy_count", "int", 1, "How many proxies in a row are trusted: of a header listing several hops, "
       "the last this many are believed and the oldest of them wins (waitress).", "Security",
       ("--trusted-proxy-count",), (1, None), "INT"),
    _S("clear_untrusted_proxy_headers", "bool", False, "Remove the forwarding headers that are not believed "
       "(all of them from untrusted peers) from the environ, so the app cannot read forged ones. Off by "
       "default as in Gunicorn (middleware such as werkzeug's ProxyFix reads them); waitress has it on.",
       "Security", ("--clear-untrusted-proxy-headers",)),
    _S("log_untrusted_proxy_headers", "bool", False, "With clear_untrusted_proxy_headers, log a warning naming the "
       "forwarding headers removed from a request (waitress).", "Security", ("--log-untrusted-proxy-headers",)),
    _S("url_scheme", "choice", "http", "wsgi.url_scheme of plain (not TLS) requests, unless a trusted proxy's "
       "headers say otherwise (waitress). TLS listeners always say https.", "Server mechanics",
       ("--url-scheme",), ("http", "https"), "SCHEME"),
    _S("ident", "ident", None, "The Server header's value (waitress's name); default `pasteserve/VERSION`.",
       "Server mechanics", ("--ident",), meta="TEXT"),
    _S("expose_tracebacks", "bool", False, "Show the app's traceback on the 500 page instead of a generic line "
       "(development only: it reveals code and data to every client). The error log has it either way.",
       "Server mechanics", ("--expose-tracebacks",)),


    _S("proxy_protocol", "proxy_protocol", "off", "Expect a PROXY protocol header (HAProxy `send-proxy`/`send-proxy-v2`, "
       "AWS NLB) on every connection from proxy_allow_ips, and take the client address (and, with v2, https) from it: "
       "`v1`, `v2`, `auto` (either; also `true`) or `off`. A connection from those peers without a valid header "
       "gets 400.", "Security", ("--proxy-protocol",), meta="MODE"),
    _S("proxy_allow_ips", "ips", ["127.0.0.1", "::1"], "Peers whose PROXY protocol header is trusted (addresses or "
       "networks, `*` for all); from any other peer such a header is a bad request.", "Security",
       ("--proxy-allow-from",), meta="IPS"),
    _S("root_path", "str", None, "SCRIPT_NAME for every request, when the app is mounted under a prefix.",
       "Server mechanics", ("--root-path",), meta="PATH"),
    _S("preload_app", "bool", False, "Load the app in the master before forking (less memory, no app reload on HUP).",
       "Server mechanics", ("--preload",)),
    _S("reload", "bool", False, "Restart the server when its code or config files change (development; "
       "implies preload_app).", "Server mechanics", ("--reload",)),
    _S("reload_extra_files", "paths", [], "With reload: more files to watch (templates, data), separated by commas.",
       "Server mechanics", ("--reload-extra-file",), meta="FILE", repeat=True),
    _S("raw_env", "env", [], "Environment variables set in the master before the app loads, as KEY=VALUE "
       "(`-e` may be repeated).", "Server mechanics", ("-e", "--env"), meta="KEY=VALUE", repeat=True),
    _S("pythonpath", "paths", [], "Directories put first on sys.path before the app loads, separated by commas.",
       "Server mechanics", ("--pythonpath",), meta="DIRS"),
    _S("chdir", "str", None, "Change to this directory before loading the app.", "Server mechanics", ("--chdir",), meta="DIR"),
    _S("daemon", "bool", False, "Detach from the terminal and run in the background.", "Server mechanics", ("-D", "--daemon")),
    _S("pidfile", "str", None, "Write the master's PID to this file.", "Server mechanics", ("-p", "--pid"), meta="FILE"),
    _S("user", "user", None, "Switch workers to this user (name or uid); unix socket files are given to it too.", "Server mechanics", ("-u", "--user"), meta="USER"),
    _S("group", "group", None, "Switch workers to this group (name or gid); unix socket files are given to it too.", "Server mechanics", ("-g", "--group"), meta="GROUP"),
    _S("umask", "octal", 0, "File mode mask applied while binding unix sockets (0, as Gunicorn, lets a proxy running as another "
       "user connect); the process and the files the app creates keep the umask the server was started with.", "Server mechanics",
       ("-m", "--umask"), meta="MODE"),
    _S("unix_socket_perms", "octal", None, "Mode of unix socket files, set after bind (waitress's name; "
       "e.g. 660 for a proxy in the socket's group). Unset: the mode the umask gives.", "Server mechanics",
       ("--unix-socket-perms",), meta="MODE"),
    _S("proc_name", "str", None, "Name shown in process titles (default: the config file or app).",
       "Server mechanics", ("-n", "--name"), meta="NAME"),
    _S("certfile", "str", None, "TLS certificate file; serving https when set.", "TLS", ("--certfile",), meta="FILE"),
    _S("keyfile", "str", None, "TLS private key file.", "TLS", ("--keyfile",), meta="FILE"),
    _S("ca_certs", "str", None, "CA certificates (PEM file) that client certificates are checked against.",
       "TLS", ("--ca-certs",), meta="FILE"),
    _S("cert_reqs", "cert_reqs", 0, "Client certificates: 0/none (not asked for), 1/optional (verified when "
       "sent), 2/required (a client without a valid one fails the TLS handshake: mutual TLS). 1 and 2 need "
       "ca_certs. The app finds a verified certificate in environ `pasteserve.peercert` (the dict of Python's "
       "`getpeercert()`) and `SSL_CLIENT_CERT` (PEM).", "TLS", ("--cert-reqs",), meta="MODE"),
    _S("ciphers", "str", None, "TLS 1.2 cipher list in OpenSSL's format (default: Python's); TLS 1.3 suites "
       "are not affected.", "TLS", ("--ciphers",), meta="CIPHERS"),
    _S("tls_min_version", "choice", "1.2", "Oldest TLS version accepted: 1.2 or 1.3.", "TLS",
       ("--tls-min-version",), tuple(TLS_VERSIONS), "VERSION"),
    _S("accesslog", "str", None, "Access log: a file, or `-` for stdout. Off by default.", "Logging",
       ("--access-logfile",), meta="FILE"),
    _S("access_log_format", "access_format", DEFAULT_ACCESS_LOG_FORMAT, "Access log line, with Gunicorn's atoms.",
       "Logging", ("--access-logformat",), meta="FORMAT"),
    _S("errorlog", "str", "-", "Error log: a file, or `-` for stderr. An INI with [loggers] configures logging instead.",
       "Logging", ("--error-logfile", "--log-file"), meta="FILE"),
    _S("loglevel", "loglevel", "info", "Error log level: debug, info, warning, error, critical.", "Logging",
       ("--log-level",), meta="LEVEL"),
    _S("logconfig", "str", None, "A logging.config.fileConfig file that configures logging (instead of errorlog, "
       "accesslog and loglevel).", "Logging", ("--log-config",), meta="FILE"),
    _S("logconfig_dict", "dict", {}, "A logging.config.dictConfig dict (JSON text in an INI) that configures "
       "logging; wins over logconfig.", "Logging", meta="DICT"),
    _S("capture_output", "bool", False, "Send the stdout and stderr of the master and workers (print, "
       "tracebacks) to the errorlog file.", "Logging", ("--capture-output",)),
    _S("statsd_host", "statsd", None, "Send StatsD metrics (Gunicorn's names) to HOST:PORT (UDP, port 8125 if "
       "left out) or unix:PATH (a datagram socket). Off by default.", "Metrics", ("--statsd-host",), meta="ADDRESS"),
    _S("statsd_prefix", "str", None, "Prefix for every metric name; a trailing dot is added.", "Metrics",
       ("--statsd-prefix",), meta="PREFIX"),
    _S("statsd_namespace", "str", "gunicorn", "The name segment after the prefix: `gunicorn` keeps Gunicorn "
       "dashboards working (`PREFIX.gunicorn.requests`); empty leaves the segment out.", "Metrics",
       ("--statsd-namespace",), meta="NAME"),
    _S("dogstatsd_tags", "str", None, "DogStatsD tags appended to every metric as `|#TAGS`, e.g. "
       "`env:prod,app:shop`.", "Metrics", ("--dogstatsd-tags",), meta="TAGS"),
    _S("enable_backlog_metric", "bool", False, "Also send `backlog`, a histogram (`|h`) of the connections "
       "waiting in the TCP listeners' accept queues, from the master about once a second (Linux; unix "
       "sockets are not counted).", "Metrics", ("--enable-backlog-metric",)),
) + tuple(
    _S(name, "callable", None, f"Server hook `{name}({', '.join(args)})`: a dotted name (module:function), "
       "or a function in the config file.", "Server hooks", meta="CALLABLE")
    for name, args in HOOK_ARGS.items()
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
IGNORED_KEYS = {"use", "here", "__file__"}


# --- the settings object ----------------------------------------------------------------------

class Settings:
    """Typed, validated option values; attribute access by option name."""

    def __init__(self, values: Mapping[str, Any] | None = None, sources: Mapping[str, str] | None = None,
                 notices: list[str] | None = None) -> None:
        self._values = {s.name: s.default for s in SETTINGS}
        self._values.update(values or {})
        self.sources: dict[str, str] = {name: "default" for name in self._values}
        self.sources.update(sources or {})
        # Accepted keys that change nothing here, said once in the log when the server starts.
        self.notices: list[str] = list(notices or [])

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def hooks(self) -> dict[str, Any]:
        return {name: self._values[name] for name in HOOK_NAMES}


@dataclass
class Problem:
    key: str
    value: Any
    message: str


@dataclass
class ConfigError(Exception):
    """Every problem found in one configuration, reported at once."""

    origin: str                      # "file app.ini, section [server:main]" or "command line"
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Invalid configuration in {self.origin}:"]
        for p in self.problems:
            lines.append(f"  {p.key} = {p.value!s}: {p.message}")
        return "\n".join(lines)


def _suggest(key: str) -> str:
    # Native names only; pasteserve.compat suggests across Gunicorn's and waitress's names too.
    import difflib   # here: only a typo needs it, and imported once it would stay in every worker

    known = list(BY_NAME)
    close = difflib.get_close_matches(key.replace("-", "_").lower(), known, n=1, cutoff=0.6)
    return f'unknown option; did you mean "{close[0]}"?' if close else "unknown option"


def validate(raw: Mapping[str, Any], origin: str, problems: list[Problem] | None = None) -> dict[str, Any]:
    """Check every option in `raw` with configobj and our checks; raise ConfigError listing all problems.

    `problems` found earlier (pasteserve.compat's translation) are reported together with these.
    """
    problems = list(problems or [])
    values = {k: v for k, v in raw.items() if k not in IGNORED_KEYS}
    unknown = [k for k in values if k not in BY_NAME]
    for key in unknown:
        problems.append(Problem(key, values[key], _suggest(key)))
    known = {k: v for k, v in values.items() if k in BY_NAME}
    # Typed values (a Python config file's) are checked directly: configobj takes a dict for a
    # subsection and hands back some typed values unconverted (timeout = 30 stayed an int).
    direct = {}
    for key in [k for k, v in known.items() if not isinstance(v, str)]:
        value = known.pop(key)
        try:
            direct[key] = BY_NAME[key].parse(value)
        except CheckError as exc:
            problems.append(Problem(key, value, str(exc)))
    spec = ConfigObj([BY_NAME[k].spec_line() for k in known], list_values=False, _inspec=True)
    conf = ConfigObj(known, configspec=spec, interpolation=False)
    validator = Validator({name: fn for name, fn in CHECKS.items()})
    result = conf.validate(validator, preserve_errors=True)
    for _sections, key, error in flatten_errors(conf, result):
        message = str(error) if isinstance(error, ValidateError) else "missing value"
        problems.append(Problem(key, known.get(key, ""), message or "invalid value"))
    # configobj leaves nothing extra here (unknown keys were removed above); keep it honest anyway.
    for _sections, key in get_extra_values(conf):
        problems.append(Problem(key, known.get(key, ""), _suggest(key)))
    if problems:
        raise ConfigError(origin, problems)
    return {**{k: conf[k] for k in known}, **direct}


def settings_from_mapping(raw: Mapping[str, Any], origin: str, source: str | Mapping[str, str],
                          base: Settings | None = None, problems: list[Problem] | None = None,
                          notices: list[str] = ()) -> Settings:
    """Validate `raw` and layer it over `base` (defaults when None).

    `source` names where the values came from: one text for all, or one per key.
    """
    parsed = validate(raw, origin, problems)
    values = base.as_dict() if base else {}
    sources = dict(base.sources) if base else {}
    values.update(parsed)
    clashes = _contradictions(values, parsed)
    if clashes:
        raise ConfigError(origin, clashes)
    sources.update({k: source if isinstance(source, str) else source.get(k, origin) for k in parsed})
    return Settings(values, sources, [*(base.notices if base else ()), *notices])


def _contradictions(values: Mapping[str, Any], parsed: Mapping[str, Any]) -> list[Problem]:
    """Options valid one by one that cannot go together; blamed on the key this layer set."""
    worker_class = values.get("worker_class", BY_NAME["worker_class"].default)
    threads = values.get("threads", BY_NAME["threads"].default)
    if worker_class == "eventlet" and threads > 1:
        if "threads" in parsed or "worker_class" not in parsed:
            return [Problem("threads", threads, "the eventlet worker has no thread pool (one green thread per "
                            "connection, bounded by worker_connections); remove threads, or use "
                            "worker_class = gthread for a thread pool")]
        return [Problem("worker_class", worker_class, f"cannot run with threads = {threads}; use "
                        "worker_class = gthread (or sync) for a thread pool, or remove threads")]
    return []


# --- command line ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting that has one; values stay strings and are checked by `validate`."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if not s.cli:
            continue
        group = groups.setdefault(s.section, parser.add_argument_group(s.section))
        if s.check == "bool":
            group.add_argument(*s.cli, dest=s.name, action="store_const", const="true",
                               default=argparse.SUPPRESS, help=s.doc)
        elif s.repeat:
            group.add_argument(*s.cli, dest=s.name, action="append", metavar=s.meta,
                               default=argparse.SUPPRESS, help=s.doc + " Repeat for several.")
        else:
            group.add_argument(*s.cli, dest=s.name, metavar=s.meta, default=argparse.SUPPRESS, help=s.doc)


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    return {s.name: getattr(namespace, s.name) for s in SETTINGS if hasattr(namespace, s.name)}


# --- docs -----------------------------------------------------------------------------------------

def render_docs() -> str:
    """docs/settings.md, generated from the table (tests fail when the file is stale)."""
    out = ["# Settings reference", "",
           "Generated from `pasteserve/settings.py` by `python -m pasteserve.settings > docs/settings.md`; "
           "do not edit by hand.", "",
           "Every option can be set in the INI's `[server:main]` section (`name = value`), in a Python "
           "config file (`config = conf.py`), or on the `pasteserve` command line. Booleans accept "
           "true/false, yes/no, on/off, 1/0.", ""]
    section = None
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            out += [f"## {section}", "", "| INI key | command line | default | meaning |", "|---|---|---|---|"]
        default = _doc_default(s)
        flags = ", ".join(f"`{f}`" for f in s.cli) or "—"
        out.append(f"| `{s.name}` | {flags} | {default} | {s.doc} |")
        nxt = SETTINGS.index(s) + 1
        if nxt == len(SETTINGS) or SETTINGS[nxt].section != section:
            out.append("")
    return "\n".join(out)


def _doc_default(s: Setting) -> str:
    value = s.default
    if value is None or value == [] or value == {}:
        return "—"
    if s.check == "octal":
        return f"`{value:#o}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`" + " ".join(value) + "`"
    if isinstance(value, dict):
        return "`" + " ".join(f"{k}={v}" for k, v in value.items()) + "`"
    return "`" + str(value).replace("|", "\\|") + "`"


if __name__ == "__main__":
    print(render_docs(), end="")
