import logging
import logging.config
import os
import re
import textwrap
import time
from datetime import datetime

import pytest

from pasteserve.logs import (
    ACCESS_LOGGER,
    DEFAULT_ACCESS_LOG_FORMAT,
    ERROR_LOGGER,
    AccessLog,
    check_access_log_format,
    reopen_files,
    setup_logging,
)

ERROR_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[(\w+)\] (.*)")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logger():
    log = logging.Logger("test.access")
    handler = ListHandler()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.lines = handler.lines
    return log


@pytest.fixture
def restore_logging():
    """Put every logger back as it was: these tests reconfigure process-wide state."""
    root = logging.getLogger()
    loggers = [root] + [
        lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = {id(lg): (lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}
    # Make sure ours exist before fileConfig runs, as they do in the server.
    logging.getLogger(ERROR_LOGGER), logging.getLogger(ACCESS_LOGGER)
    yield
    for lg in [root] + [lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]:
        before = saved.get(id(lg))
        for handler in list(lg.handlers):
            if before is None or handler not in before[1]:
                lg.removeHandler(handler)
                handler.close()
        if before is None:
            lg.setLevel(logging.NOTSET)
            lg.propagate, lg.disabled = True, False
            continue
        _, handlers, level, propagate, disabled = before
        for handler in handlers:
            if handler not in lg.handlers:
                lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def environ(**extra):
    env = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "a=1",
        "RAW_URI": "/hello?a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_REFERER": "http://example.com/",
        "HTTP_USER_AGENT": "curl/8.0",
    }
    env.update(extra)
    return env


def line(fmt, logger, env=None, status="200 OK", headers=(), body_len=42, request_time=0.25):
    AccessLog(fmt, logger)(env if env is not None else environ(), status, list(headers), body_len, request_time)
    assert len(logger.lines) == 1
    return logger.lines.pop()


# --- format checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        DEFAULT_ACCESS_LOG_FORMAT,
        "%(h)s %(D)s %({X-Forwarded-For}i)s %({content-type}o)s %({wsgi.url_scheme}e)s",
        "no atoms at all, 100%% literal",
        "%(s)-5s|%(m)10s",
    ],
)
def test_valid_formats(fmt):
    assert check_access_log_format(fmt) is None


@pytest.mark.parametrize(
    "fmt, words",
    [
        ("%(h)s %(z)s", "unknown access log atom %(z)s"),
        ("%({}i)s", "unknown access log atom %({}i)s"),
        ("%({x}q)s", "unknown access log atom"),
        ("100%", "invalid access log format"),
        ("%(D)d", "invalid access log format"),
        ("%s", "needs an atom name"),
        ("%(h)s %s", "invalid access log format"),
    ],
)
def test_invalid_formats_say_why(fmt, words):
    message = check_access_log_format(fmt)
    assert message is not None and words in message


def test_access_log_refuses_an_invalid_format():
    with pytest.raises(ValueError, match="unknown access log atom %\\(nope\\)s"):
        AccessLog("%(nope)s")


# --- atoms -----------------------------------------------------------------------------


def test_default_format(logger):
    text = line(DEFAULT_ACCESS_LOG_FORMAT, logger)
    match = re.fullmatch(r'10\.0\.0\.1 - - (\[.*?\]) "GET /hello\?a=1 HTTP/1\.1" 200 42 "http://example\.com/" "curl/8\.0"', text)
    assert match, text
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", match.group(1))


def test_time_is_when_the_request_arrived(logger):
    # An hour-long request is stamped an hour before it is logged (Common Log Format).
    stamp = line("%(t)s", logger, request_time=3600.0)
    arrived = datetime.strptime(stamp, "[%d/%b/%Y:%H:%M:%S %z]").timestamp()
    assert abs(arrived - (time.time() - 3600)) < 60


def test_request_line_rebuilt_without_raw_uri(logger):
    env = environ(SCRIPT_NAME="/app", PATH_INFO="/x y", QUERY_STRING="")
    del env["RAW_URI"]
    assert line("%(r)s|%(U)s|%(q)s", logger, env) == "GET /app/x y HTTP/1.1|/app/x y|-"
    env["QUERY_STRING"] = "k=v"
    assert line("%(r)s|%(q)s", logger, env) == "GET /app/x y?k=v HTTP/1.1|k=v"


def test_method_protocol_status(logger):
    assert line("%(m)s %(H)s %(s)s", logger, status="404 Not Found") == "GET HTTP/1.1 404"


def test_body_length_atoms(logger):
    assert line("%(B)s %(b)s", logger, body_len=0) == "0 -"
    assert line("%(B)s %(b)s", logger, body_len=7) == "7 7"


def test_timing_atoms(logger):
    assert line("%(T)s %(D)s %(M)s %(L)s", logger, request_time=1.5) == "1 1500000 1500 1.500000"


def test_pid_and_l(logger):
    assert line("%(p)s %(l)s", logger) == f"{os.getpid()} -"


@pytest.mark.parametrize(
    "extra, user",
    [
        ({"REMOTE_USER": "alice"}, "alice"),
        ({"HTTP_AUTHORIZATION": "Basic Ym9iOnNlY3JldA=="}, "bob"),  # bob:secret
        ({"HTTP_AUTHORIZATION": "basic Ym9iOnNlY3JldA=="}, "bob"),
        ({"HTTP_AUTHORIZATION": "Basic !!notbase64"}, "-"),
        ({"HTTP_AUTHORIZATION": "Bearer abc"}, "-"),
        ({}, "-"),
    ],
)
def test_user(logger, extra, user):
    assert line("%(u)s", logger, environ(**extra)) == user


def test_request_response_and_environ_atoms(logger):
    env = environ(HTTP_X_FORWARDED_FOR="1.2.3.4", CONTENT_TYPE="text/plain", **{"wsgi.url_scheme": "https"})
    headers = [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")]
    fmt = "%({x-forwarded-for}i)s %({Content-Type}i)s %({content-type}o)s %({set-cookie}o)s %({wsgi.url_scheme}e)s"
    assert line(fmt, logger, env, headers=headers) == "1.2.3.4 text/plain text/html a=1, b=2 https"


def test_missing_values_are_dashes(logger):
    fmt = "%(h)s %(f)s %(a)s %({x-missing}i)s %({x-missing}o)s %({missing}e)s %(q)s"
    assert line(fmt, logger, {"REMOTE_ADDR": "", "QUERY_STRING": ""}) == "- - - - - - -"
    assert line("%(r)s %(U)s %(s)s", logger, {}, status="") == "- - -"


def test_control_characters_and_quotes_are_escaped(logger):
    env = environ(HTTP_USER_AGENT='evil\r\n10.0.0.2 - - "GET / HTTP/1.1" 200 \\ \x00\x7f\xe9')
    text = line('"%(a)s"', logger, env, headers=[("X-Out", "a\nb")])
    assert text == '"evil\\x0d\\x0a10.0.0.2 - - \\"GET / HTTP/1.1\\" 200 \\\\ \\x00\\x7f\\xe9"'
    assert line("%({x-out}o)s", logger, headers=[("X-Out", "a\nb")]) == "a\\x0ab"


def test_only_the_atoms_in_the_format_are_computed(logger):
    class Watched(dict):
        def __init__(self, *args):
            super().__init__(*args)
            self.read = set()

        def get(self, key, default=None):
            self.read.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.read.add(key)
            return super().__getitem__(key)

    env = Watched(environ())
    assert line("%(s)s %({x-a}i)s", logger, env) == "200 -"
    assert env.read == {"HTTP_X_A"}


def test_percent_in_values_is_not_reformatted(logger):
    assert line("%(U)s", logger, environ(PATH_INFO="/%s%(h)s")) == "/%s%(h)s"


def test_disabled_logger_logs_nothing(logger):
    logger.setLevel(logging.WARNING)
    AccessLog(DEFAULT_ACCESS_LOG_FORMAT, logger)(environ(), "200 OK", [], 1, 0.1)
    assert logger.lines == []


# --- setup_logging and reopen_files ---------------------------------------------------


def test_error_log_to_file_in_gunicorn_format(tmp_path, restore_logging):
    path = tmp_path / "error.log"
    setup_logging(str(path), "info", None, configured_by_ini=False)
    error = logging.getLogger(ERROR_LOGGER)
    error.info("Listening at %s", "http://127.0.0.1:8000")
    error.debug("not at info")
    match = ERROR_LINE.fullmatch(path.read_text().strip())
    assert match and match.groups() == (str(os.getpid()), "INFO", "Listening at http://127.0.0.1:8000")


def test_error_log_defaults_to_stderr(capsys, restore_logging):
    setup_logging("-", "warning", None, configured_by_ini=False)
    logging.getLogger(ERROR_LOGGER).info("hidden")
    logging.getLogger(ERROR_LOGGER).warning("shown")
    err = capsys.readouterr().err.strip()
    assert ERROR_LINE.fullmatch(err).group(2, 3) == ("WARNING", "shown")


def test_access_log_to_stdout_and_off_by_default(capsys, restore_logging):
    setup_logging("-", "info", None, configured_by_ini=False)
    AccessLog("%(s)s")(environ(), "204 No Content", [], 0, 0.0)
    assert capsys.readouterr().out == ""
    setup_logging("-", "info", "-", configured_by_ini=False)
    AccessLog("%(s)s")(environ(), "204 No Content", [], 0, 0.0)
    assert capsys.readouterr().out == "204\n"


def test_access_log_to_file(tmp_path, restore_logging):
    path = tmp_path / "access.log"
    setup_logging("-", "info", str(path), configured_by_ini=False)
    AccessLog("%(m)s %(U)s")(environ(), "200 OK", [], 0, 0.0)
    assert path.read_text() == "GET /hello\n"


def test_setup_again_replaces_handlers(tmp_path, restore_logging):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    setup_logging(str(first), "info", "-", configured_by_ini=False)
    setup_logging(str(second), "info", "-", configured_by_ini=False)
    assert len(logging.getLogger(ERROR_LOGGER).handlers) == 1
    assert len(logging.getLogger(ACCESS_LOGGER).handlers) == 1
    logging.getLogger(ERROR_LOGGER).info("after reload")
    assert "after reload" not in first.read_text()
    assert "after reload" in second.read_text()


def test_unknown_level_is_refused(restore_logging):
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("-", "loud", None, configured_by_ini=False)


def write_ini(path, *, name_access: bool, log_file) -> str:
    access = (
        f"""
        [logger_access]
        level = INFO
        handlers = accessfile
        qualname = {ACCESS_LOGGER}
        propagate = 0

        [handler_accessfile]
        class = FileHandler
        args = ({str(log_file) + '.access'!r}, 'a')
        formatter = plain
        """
        if name_access
        else ""
    )
    path.write_text(
        textwrap.dedent(
            f"""
            [loggers]
            keys = root{', access' if name_access else ''}

            [handlers]
            keys = file{', accessfile' if name_access else ''}

            [formatters]
            keys = plain

            [logger_root]
            level = INFO
            handlers = file

            [handler_file]
            class = FileHandler
            args = ({str(log_file)!r}, 'a')
            formatter = plain

            [formatter_plain]
            format = %(name)s %(message)s
            """
        )
        + textwrap.dedent(access)
    )
    return str(path)


def test_ini_configuration_wins(tmp_path, restore_logging):
    log_file = tmp_path / "app.log"
    # The server first ran without [loggers], then a reload brought the INI's.
    setup_logging("-", "info", "-", configured_by_ini=False)
    logging.config.fileConfig(write_ini(tmp_path / "app.ini", name_access=False, log_file=log_file))
    setup_logging("-", "debug", None, configured_by_ini=True)
    error, access = logging.getLogger(ERROR_LOGGER), logging.getLogger(ACCESS_LOGGER)
    assert not error.disabled and error.propagate and error.handlers == []
    error.error("boom")
    AccessLog("%(s)s")(environ(), "200 OK", [], 0, 0.0)
    assert log_file.read_text() == f"{ERROR_LOGGER} boom\n{ACCESS_LOGGER} 200\n"


def test_ini_that_names_the_access_logger(tmp_path, restore_logging):
    log_file = tmp_path / "app.log"
    logging.config.fileConfig(write_ini(tmp_path / "app.ini", name_access=True, log_file=log_file))
    setup_logging("-", "info", None, configured_by_ini=True)
    AccessLog("%(s)s")(environ(), "200 OK", [], 0, 0.0)
    logging.getLogger(ERROR_LOGGER).warning("careful")
    assert (tmp_path / "app.log.access").read_text() == f"{ACCESS_LOGGER} 200\n"
    assert log_file.read_text() == f"{ERROR_LOGGER} careful\n"


def test_reopen_files_follows_logrotate(tmp_path, restore_logging):
    error_path, root_path = tmp_path / "error.log", tmp_path / "root.log"
    setup_logging(str(error_path), "info", None, configured_by_ini=False)
    root_handler = logging.FileHandler(root_path)  # as an INI's [handler_*] would add
    logging.getLogger().addHandler(root_handler)
    error, root = logging.getLogger(ERROR_LOGGER), logging.getLogger()
    error.info("before")
    root.warning("before")
    error_path.rename(tmp_path / "error.log.1")
    root_path.rename(tmp_path / "root.log.1")

    reopen_files()
    error.info("after")
    root.warning("after")

    assert "before" in (tmp_path / "error.log.1").read_text()
    assert "after" not in (tmp_path / "error.log.1").read_text()
    assert ERROR_LINE.fullmatch(error_path.read_text().strip()).group(3) == "after"
    assert (tmp_path / "root.log.1").read_text() == "before\n"
    assert root_path.read_text() == "after\n"
