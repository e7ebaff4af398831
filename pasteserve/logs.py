"""Error and access logging: handler setup, reopening on USR1, access log lines.

Two loggers carry everything the server says: ``pasteserve.error`` (life cycle,
worker deaths, tracebacks) and ``pasteserve.access`` (one INFO line per request).
When the INI has ``[loggers]`` it configures them like any other logger;
otherwise :func:`setup_logging` gives them Gunicorn-style handlers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import sys
import time
from collections.abc import Callable

ERROR_LOGGER = "pasteserve.error"
ACCESS_LOGGER = "pasteserve.access"

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

_ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
_ERROR_DATEFMT = "[%Y-%m-%d %H:%M:%S %z]"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Marks handlers setup_logging installed, so a reload removes exactly those.
_OURS = "_pasteserve_handler"


def setup_logging(
    errorlog: str | None,
    loglevel: str,
    accesslog: str | None,
    *,
    configured_by_ini: bool,
) -> None:
    """Configure the error and access loggers; calling it again replaces, never stacks.

    ``errorlog``: ``"-"`` or None for stderr, else a file path (appended to).
    ``accesslog``: None for no access log, ``"-"`` for stdout, else a file path.
    With ``configured_by_ini`` the INI's ``logging.config.fileConfig`` already ran
    and wins: no handler is added, the arguments other than that flag are ignored.
    """
    error, access = logging.getLogger(ERROR_LOGGER), logging.getLogger(ACCESS_LOGGER)
    if configured_by_ini:
        for logger in (error, access):
            _yield_to_ini(logger)
        _follow_gunicorn_loggers()
        return
    try:
        level = _LEVELS[loglevel.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {loglevel!r}; expected one of {', '.join(_LEVELS)}"
        ) from None
    error_handler = _handler(errorlog or "-", sys.stderr)
    error_handler.setFormatter(logging.Formatter(_ERROR_FORMAT, _ERROR_DATEFMT))
    _own(error, error_handler, level)
    if accesslog is None:
        # Above CRITICAL, so AccessLog sees the logger disabled and skips formatting.
        _own(access, logging.NullHandler(), logging.CRITICAL + 1)
    else:
        access_handler = _handler(accesslog, sys.stdout)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        _own(access, access_handler, logging.INFO)


def _handler(target: str, stream) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(stream)
    # StreamHandler flushes after every record, so the file is effectively line-buffered.
    return logging.FileHandler(target, mode="a", encoding="utf-8")


def _own(logger: logging.Logger, handler: logging.Handler, level: int) -> None:
    """Make ``handler`` the logger's only handler; the logger stops propagating."""
    setattr(handler, _OURS, True)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        if getattr(old, _OURS, False):
            old.close()
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logger.disabled = False


def _yield_to_ini(logger: logging.Logger) -> None:
    # fileConfig strips the handlers of every logger the INI names; a handler of
    # ours still attached means the INI left this logger alone.
    ours = [h for h in logger.handlers if getattr(h, _OURS, False)]
    for handler in ours:
        logger.removeHandler(handler)
        handler.close()
    if ours:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    # fileConfig(disable_existing_loggers=True) silences loggers created before it
    # and not named in the INI: ours would swallow every error without a trace.
    logger.disabled = False


# Gunicorn's logger names; a logging config written for Gunicorn configures ours through them.
GUNICORN_ALIASES = {ERROR_LOGGER: "gunicorn.error", ACCESS_LOGGER: "gunicorn.access"}


def _follow_gunicorn_loggers() -> None:
    """Give our loggers the handlers and level the config gave gunicorn.error / gunicorn.access.

    Only when the config did not configure ours itself; said once in the log.
    """
    existing = logging.Logger.manager.loggerDict
    for ours_name, theirs_name in GUNICORN_ALIASES.items():
        theirs, ours = existing.get(theirs_name), logging.getLogger(ours_name)
        if not isinstance(theirs, logging.Logger) or not (theirs.handlers or theirs.level):
            continue
        if ours.handlers or ours.level:
            continue
        for handler in theirs.handlers:
            ours.addHandler(handler)
        ours.setLevel(theirs.level)
        ours.propagate = theirs.propagate
        logging.getLogger(ERROR_LOGGER).info(
            "The logging config's %s logger (Gunicorn's name) configures %s", theirs_name, ours_name)


def configure_from(logconfig: str | None, logconfig_dict: dict | None) -> bool:
    """Configure logging from `logconfig_dict` (dictConfig) or `logconfig` (fileConfig); True when one did."""
    import logging.config

    if logconfig_dict:
        config = dict(logconfig_dict)
        # Gunicorn merges into its defaults, which keep loggers that exist; so do we.
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
        return True
    if logconfig:
        if not os.path.isfile(logconfig):
            raise OSError(f"no such logging config file: {logconfig}")
        logging.config.fileConfig(logconfig, disable_existing_loggers=False)
        return True
    return False


def capture_output(errorlog: str | None) -> None:
    """`capture_output`: what the app prints (fd 1 and 2, in this process and in its children) goes
    to the error log file; with `errorlog = -` stdout joins stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    if errorlog and errorlog != "-":
        fd = os.open(errorlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    else:
        os.dup2(2, 1)
    # Line by line, so a print shows up next to the log lines around it.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def reopen_files() -> None:
    """Reopen every file handler at its path (USR1), so rotated logs are released."""
    seen: set[int] = set()
    loggers = [logging.getLogger()]
    loggers += [
        lg for lg in logging.getLogger().manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if id(handler) in seen or not isinstance(handler, logging.FileHandler):
                continue
            seen.add(id(handler))
            # A delayed handler has no stream yet and will open the path on first use.
            if handler.stream is None:
                continue
            # Always append: "w" would truncate lines a sibling process wrote after rotation.
            try:
                stream = open(handler.baseFilename, "a", encoding=handler.encoding, errors=handler.errors)
            except OSError:
                # Keep writing to the old file rather than losing lines or the process.
                logging.getLogger(ERROR_LOGGER).exception("cannot reopen log file %s", handler.baseFilename)
                continue
            old = handler.setStream(stream)
            if old is not None:
                old.close()


# --- access log -------------------------------------------------------------------

# Arguments every atom getter receives, in this order.
_Getter = Callable[[dict, str, list, int, float], str]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Anything outside printable ASCII, plus the quote and backslash that delimit fields.
_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_ESCAPES = {'"': '\\"', "\\": "\\\\"}
_VARIABLE_ATOM = re.compile(r"\{([^{}]+)\}([ioe])\Z")


def _escape(value: str) -> str:
    """Make a client- or app-supplied value safe for one log line (Apache's escaping)."""
    return _UNSAFE.sub(_escape_char, value)


def _escape_char(match: re.Match) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _dash(value: object) -> str:
    if value is None or value == "":
        return "-"
    return _escape(value if isinstance(value, str) else str(value))


def _full_path(environ: dict) -> str:
    return environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")


def _request_line(environ, status, headers, body_len, request_time) -> str:
    target = environ.get("RAW_URI")
    if not target:
        target = _full_path(environ)
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    parts = (environ.get("REQUEST_METHOD"), target, environ.get("SERVER_PROTOCOL"))
    return _escape(" ".join(p for p in parts if p)) or "-"


def _user(environ, status, headers, body_len, request_time) -> str:
    if environ.get("REMOTE_USER"):
        return _dash(environ["REMOTE_USER"])
    scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return "-"
    return _dash(decoded.partition(":")[0])


def _request_start(environ, status, headers, body_len, request_time) -> str:
    # Common Log Format stamps the time the request was received, not logged.
    moment = time.localtime(time.time() - request_time)
    return time.strftime(f"[%d/{_MONTHS[moment.tm_mon - 1]}/%Y:%H:%M:%S %z]", moment)


def _environ(key: str) -> _Getter:
    return lambda environ, status, headers, body_len, request_time: _dash(environ.get(key))


def _request_header(name: str) -> _Getter:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    return _environ(key)


def _response_header(name: str) -> _Getter:
    wanted = name.lower()

    def get(environ, status, headers, body_len, request_time) -> str:
        return _dash(", ".join(value for key, value in headers if key.lower() == wanted))

    return get


# Getters take (environ, status, headers, body length, request seconds): e, s, h, n, t.
_ATOMS: dict[str, _Getter] = {
    "h": _environ("REMOTE_ADDR"),
    "l": lambda e, s, h, n, t: "-",
    "u": _user,
    "t": _request_start,
    "r": _request_line,
    "m": _environ("REQUEST_METHOD"),
    "U": lambda e, s, h, n, t: _dash(_full_path(e)),
    "q": _environ("QUERY_STRING"),
    "H": _environ("SERVER_PROTOCOL"),
    "s": lambda e, s, h, n, t: _dash(s.split(None, 1)[0] if s else ""),
    "B": lambda e, s, h, n, t: str(n),
    "b": lambda e, s, h, n, t: str(n) if n else "-",
    "f": _environ("HTTP_REFERER"),
    "a": _environ("HTTP_USER_AGENT"),
    "T": lambda e, s, h, n, t: str(int(t)),
    "D": lambda e, s, h, n, t: str(int(t * 1_000_000)),
    "M": lambda e, s, h, n, t: str(int(t * 1_000)),
    "L": lambda e, s, h, n, t: f"{t:.6f}",
    "p": lambda e, s, h, n, t: str(os.getpid()),
}
_VARIABLE_ATOMS: dict[str, Callable[[str], _Getter]] = {
    "i": _request_header,
    "o": _response_header,
    "e": _environ,
}


def _getter(atom: str) -> _Getter | None:
    if atom in _ATOMS:
        return _ATOMS[atom]
    match = _VARIABLE_ATOM.match(atom)
    if match is None:
        return None
    return _VARIABLE_ATOMS[match.group(2)](match.group(1))


class _AtomRecorder:
    """A mapping for ``fmt % mapping`` that records the atoms a format uses."""

    def __init__(self) -> None:
        self.getters: dict[str, _Getter] = {}

    def __getitem__(self, atom: str) -> str:
        getter = _getter(atom)
        if getter is None:
            raise KeyError(atom)
        self.getters[atom] = getter
        return "-"

    def __str__(self) -> str:
        # Reached only by a conversion without an atom name, like a bare "%s".
        raise TypeError("every conversion needs an atom name, like %(h)s")

    __repr__ = __str__


def _compile(fmt: str) -> dict[str, _Getter]:
    """Return the getters of the atoms ``fmt`` uses; ValueError names what is wrong."""
    recorder = _AtomRecorder()
    try:
        fmt % recorder
    except KeyError as exc:
        raise ValueError(
            f"unknown access log atom %({exc.args[0]})s; expected one of "
            f"{' '.join(_ATOMS)} or {{header}}i, {{header}}o, {{variable}}e"
        ) from None
    except (TypeError, ValueError) as exc:
        # Every atom renders as a string, so a format that takes "-" takes any value.
        raise ValueError(f"invalid access log format {fmt!r}: {exc}") from None
    return recorder.getters


def check_access_log_format(fmt: str) -> str | None:
    """Return why ``fmt`` is not a valid access log format, or None when it is."""
    try:
        _compile(fmt)
    except ValueError as exc:
        return str(exc)
    return None


class AccessLog:
    """Formats and logs one access line per request with Gunicorn's atoms.

    The format is parsed once: a request only computes the atoms it uses.
    """

    def __init__(self, fmt: str = DEFAULT_ACCESS_LOG_FORMAT, logger: logging.Logger | None = None) -> None:
        self._fmt = fmt
        self._getters = tuple(_compile(fmt).items())
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def __call__(
        self,
        environ: dict,
        status: str,
        resp_headers: list[tuple[str, str]],
        body_len: int,
        request_time: float,
    ) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        atoms = {
            atom: getter(environ, status, resp_headers, body_len, request_time)
            for atom, getter in self._getters
        }
        # The format and the atoms, not the finished line: formatters that always apply
        # `msg % args` (colour formatters do) would choke on a "%" from the URL (Gunicorn's way).
        self.logger.info(self._fmt, atoms)
