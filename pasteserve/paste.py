"""PasteDeploy entry points and the `pasteserve_paster` command.

`use = egg:pasteserve#main` in a `[server:...]` section resolves to `server_factory`. PasteDeploy
calls it *before* it loads the app, which makes it the one place where eventlet can patch the
standard library in time, for `pserve` and `pasteserve_paster` alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Sequence

from . import __version__, reloader, workers
from .loader import (AppLoadError, PasteSource, configure_logging_from_ini, find_server_section, ini_has_loggers,
                     settings_for)
from .report import check_config, print_config
from .settings import ConfigError, Settings

log = logging.getLogger("pasteserve.error")


class PasteServer:
    """What `loadserver` returns: call it with the app to serve it until the arbiter stops."""

    def __init__(self, settings: Settings, path: str | None, server_name: str | None,
                 global_conf: dict[str, Any]) -> None:
        self.settings = settings
        self.path = path
        self.server_name = server_name
        self.global_conf = global_conf

    def __call__(self, app: Callable | None) -> None:
        from .serve import run

        if self.settings.reload:
            log.warning("reload = true is for pasteserve_paster and pasteserve; with pserve use `pserve --reload`")
        reloader.watch(self.settings.reload_extra_files)   # `pserve --reload` runs hupper too
        # pserve loaded the app already (and configured logging from the INI); we serve that app.
        source = PasteSource(self.path or "", server_name=self.server_name,
                             global_conf=self._caller_conf(), preloaded_app=app)
        if self.settings.print_config or self.settings.check_config:
            raise SystemExit(_report(source, self.settings))
        status = run(source, self.settings, logging_by_ini=bool(self.path and ini_has_loggers(self.path)))
        reloader.leave_if_reloading(status)
        if status:
            raise SystemExit(status)

    def _caller_conf(self) -> dict[str, Any]:
        # global_conf minus what PasteDeploy derived from the file itself.
        return {k: v for k, v in self.global_conf.items() if k not in ("here", "__file__")}


def server_factory(global_conf: dict[str, Any], **local_conf: Any) -> PasteServer:
    """`[paste.server_factory] main`: validate the section, patch for eventlet, return the server."""
    path = global_conf.get("__file__")
    section = find_server_section(path) if path else "server:main"
    try:
        settings = settings_for(local_conf, global_conf, path, section)
    except ConfigError as exc:
        # pserve would print a traceback for any exception; a clear report and exit 2 is the contract.
        raise SystemExit(f"pasteserve: {exc}") from None
    workers.prepare(settings.worker_class)
    return PasteServer(settings, path, section.partition(":")[2], dict(global_conf))


def server_runner(wsgi_app: Callable, global_conf: dict[str, Any], **local_conf: Any) -> None:
    """`[paste.server_runner] runner`, for tools that use the runner protocol."""
    server_factory(global_conf, **local_conf)(wsgi_app)


def _report(source: PasteSource, settings: Settings) -> int:
    """`print_config` / `check_config` in the INI (or `pserve app.ini check_config=true`)."""
    if settings.print_config:
        print_config(settings)
        return 0
    return check_config(source, settings)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pasteserve_paster",
        description="Serve the app of a PasteDeploy INI file with pasteserve's [server:...] settings.")
    parser.add_argument("config_uri", metavar="CONFIG", help="the INI file, e.g. production.ini "
                        "(production.ini#NAME serves [app:NAME])")
    parser.add_argument("vars", nargs="*", metavar="key=value",
                        help="variables for the INI, as with pserve (also override server options)")
    parser.add_argument("--app-name", "-n", default=None, help="the [app:NAME] to serve (default main)")
    parser.add_argument("--server-name", "-s", default=None, help="the [server:NAME] to use (default main)")
    parser.add_argument("--version", action="version", version=f"pasteserve {__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """`pasteserve_paster app.ini [--app-name NAME] [--server-name NAME] [key=value ...]`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # `app.ini#other` serves [app:other], as pserve does; --app-name wins over the fragment.
    path, _, fragment = args.config_uri.removeprefix("config:").partition("#")
    args.app_name = args.app_name or fragment or None
    if not os.path.isfile(path):
        print(f"pasteserve_paster: no such config file: {path}", file=sys.stderr)
        return 2
    global_conf = {}
    for item in args.vars:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"pasteserve_paster: expected key=value, got {item!r}", file=sys.stderr)
            return 2
        global_conf[key.strip()] = value
    source = PasteSource(path, app_name=args.app_name, server_name=args.server_name, global_conf=global_conf)
    try:
        logging_by_ini = configure_logging_from_ini(source.path)
        from paste.deploy import loadserver

        server = loadserver("config:" + source.path, name=args.server_name, global_conf=global_conf or None)
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    except (LookupError, ValueError, OSError, ImportError) as exc:
        print(f"pasteserve_paster: {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(server, PasteServer):
        print(f"pasteserve_paster: [{find_server_section(source.path, args.server_name)}] in {path} does not "
              "use pasteserve; set `use = egg:pasteserve#main`", file=sys.stderr)
        return 2
    if server.settings.print_config or server.settings.check_config:
        return _report(source, server.settings)
    if server.settings.reload:
        reloader.start("pasteserve.paste.main", server.settings.graceful_timeout,
                       [source.path, server.settings.config, *server.settings.reload_extra_files])
    from .serve import run

    try:
        status = run(source, server.settings, logging_by_ini=logging_by_ini)
        reloader.leave_if_reloading(status)   # `reload = true`: restart without waiting on hupper
        return status
    except AppLoadError as exc:
        print(f"pasteserve_paster: {exc}", file=sys.stderr)
        return 3
