"""`pasteserve [OPTIONS] MODULE:CALLABLE` and `pasteserve --paste app.ini`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import __version__, reloader, workers
from .loader import AppLoadError, ImportSource, PasteSource, configure_logging_from_ini
from .settings import ConfigError, Settings, add_arguments, cli_values, load_config_file_settings, \
    settings_from_mapping


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasteserve",
        description="Serve a WSGI app with pre-forked workers. Options follow Gunicorn's names.",
        epilog="Example: pasteserve -w 4 -b 127.0.0.1:8000 myapp:app. "
               "`pasteserve status PIDFILE` shows the workers of a running server.")
    parser.add_argument("app", nargs="?", metavar="MODULE:CALLABLE",
                        help="the WSGI app, e.g. myapp:app or mysite.wsgi:application")
    parser.add_argument("--paste", metavar="INI", help="load the app (and logging) from a PasteDeploy INI file")
    parser.add_argument("--version", action="version", version=f"pasteserve {__version__}")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The subcommand wins over an app module named `status`, which `status:application` still serves.
    if argv[:1] == ["status"]:
        from . import status

        return status.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.app) == bool(args.paste):
        parser.error("give either MODULE:CALLABLE or --paste INI")
    flags = cli_values(args)
    if args.paste and not os.path.isfile(args.paste):
        print(f"pasteserve: no such config file: {args.paste}", file=sys.stderr)
        return 2

    def settings() -> Settings:
        # Re-read on HUP: the config file and the INI may have changed; flags win over both.
        base = load_config_file_settings(flags["config"]) if flags.get("config") else None
        if paste is not None and paste.uses_pasteserve():
            base = paste.ini_settings(base)
        return settings_from_mapping(flags, "command line", "command line", base)

    paste = PasteSource(args.paste, cli_settings=settings) if args.paste else None

    try:
        current = settings()
    except ConfigError as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 2
    if current.reload:
        reloader.start("pasteserve.cli.main", current.graceful_timeout, [current.config, args.paste])
    # Patch before the app's modules are imported (eventlet), whichever way they get loaded.
    workers.prepare(current.worker_class)
    source: PasteSource | ImportSource = paste or ImportSource(args.app, settings)
    logging_by_ini = configure_logging_from_ini(args.paste) if args.paste else False
    from .arbiter import run

    try:
        return run(source, current, logging_by_ini=logging_by_ini)
    except AppLoadError as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
