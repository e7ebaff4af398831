"""`pasteserve [OPTIONS] MODULE:CALLABLE` and `pasteserve --paste app.ini`.

Where settings come from, lowest first (docs/migrating-from-gunicorn.md): defaults; the
environment's WEB_CONCURRENCY, PORT and FORWARDED_ALLOW_IPS; the Python config file (`-c`, else
./gunicorn.conf.py when present); the INI's server section (with --paste); flags in
GUNICORN_CMD_ARGS, then in PASTESERVE_CMD_ARGS; flags on the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from . import __version__, compat, reloader, workers
from .hooks import HookError
from .loader import AppLoadError, ImportSource, PasteSource, configure_logging_from_ini
from .report import check_config, print_config
from .settings import SETTINGS, ConfigError, Settings, add_arguments, cli_values, settings_from_mapping

# Gunicorn reads this file from the working directory when no -c is given.
DEFAULT_CONFIG = "gunicorn.conf.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasteserve",
        description="Serve a WSGI app with pre-forked workers. Options follow Gunicorn's names; "
                    "Gunicorn's other flags are accepted or refused with what to use instead.",
        epilog="Example: pasteserve -w 4 -b 127.0.0.1:8000 myapp:app. "
               "`pasteserve status PIDFILE` shows the workers of a running server.")
    parser.add_argument("app", nargs="?", metavar="MODULE:CALLABLE",
                        help="the WSGI app, e.g. myapp:app or mysite.wsgi:application")
    parser.add_argument("--paste", "--paster", metavar="INI",
                        help="load the app (and logging) from a PasteDeploy INI file")
    parser.add_argument("--version", action="version", version=f"pasteserve {__version__}")
    add_arguments(parser)
    taken = {flag for s in SETTINGS for flag in s.cli} | {"--paste", "--paster", "--version", "-h", "--help"}
    compat.add_gunicorn_flags(parser, taken)
    return parser


def _flags(namespace: argparse.Namespace) -> dict[str, Any]:
    return {**cli_values(namespace), **compat.gunicorn_flag_values(namespace)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The subcommand wins over an app module named `status`, which `status:application` still serves.
    if argv[:1] == ["status"]:
        from . import status

        return status.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = _flags(args)
    env_flags = []
    for var, words in compat.cli_extra_args(os.environ):
        extra = parser.parse_args(words)
        if extra.app or extra.paste:
            parser.error(f"{var} holds flags only; name the app on the command line")
        env_flags.append((var, _flags(extra)))
    # `--paste app.ini#other` serves [app:other], as pserve does.
    ini_path, _, app_name = (args.paste or "").removeprefix("config:").partition("#")
    if args.app and args.paste:
        parser.error("give either MODULE:CALLABLE or --paste INI")
    if args.paste and not os.path.isfile(ini_path):
        print(f"pasteserve: no such config file: {ini_path}", file=sys.stderr)
        return 2
    config = flags.get("config") or next((f["config"] for _, f in env_flags if f.get("config")), None)
    if config is None and os.path.isfile(DEFAULT_CONFIG):
        config = DEFAULT_CONFIG

    def settings() -> Settings:
        # Re-read on HUP: the config file and the INI may have changed; flags win over both.
        base = compat.environment_settings(os.environ)
        if config:
            base = compat.load_config_file_settings(config, base)
        if paste is not None and paste.uses_pasteserve():
            base = paste.ini_settings(base)
        elif paste is not None:
            # Say why the section's keys change nothing, rather than dropping them silently.
            base = settings_from_mapping({}, "command line", "command line", base, notices=[
                f"[{paste.section}] in {paste.name} does not use pasteserve: its keys are not read "
                "(with `use = egg:pasteserve#main` they are)"])
        for var, values in reversed(env_flags):
            base = compat.settings_from_mapping(values, f"environment {var}", f"environment {var}", base,
                                                prefer=compat.GUNICORN)
        return compat.settings_from_mapping(flags, "command line", "command line", base, prefer=compat.GUNICORN)

    paste = PasteSource(ini_path, app_name=app_name or None, cli_settings=settings) if args.paste else None

    try:
        current = settings()
    except (ConfigError, HookError) as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 2
    target = args.app or current.wsgi_app
    if paste is None and not target:
        parser.error("give MODULE:CALLABLE, --paste INI, or wsgi_app in the config file")
    source: PasteSource | ImportSource = paste or ImportSource(target, settings)
    if current.print_config:
        print_config(current)
        return 0
    if current.check_config:
        return check_config(source, current)
    if current.reload:
        reloader.start("pasteserve.cli.main", current.graceful_timeout,
                       [current.config or config, ini_path, *current.reload_extra_files])
    # Patch before the app's modules are imported (eventlet), whichever way they get loaded.
    workers.prepare(current.worker_class)
    logging_by_ini = configure_logging_from_ini(ini_path) if args.paste else False
    from .serve import run

    try:
        status = run(source, current, logging_by_ini=logging_by_ini)
        reloader.leave_if_reloading(status)   # `reload = true`: restart without waiting on hupper
        return status
    except AppLoadError as exc:
        print(f"pasteserve: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
