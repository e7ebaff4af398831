"""Where the app and the settings come from, so the arbiter can load and reload both.

Two sources: a PasteDeploy INI file (`pasteserve_paster`, `pserve`, `pasteserve --paste`) and a
`MODULE:CALLABLE` import path (`pasteserve myapp:app`). The arbiter only calls `settings()` (on
start and on HUP) and `load_app()` (in each worker, or once in the master with preload_app).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import compat
from .settings import Settings

if TYPE_CHECKING:
    import configparser

log = logging.getLogger("pasteserve.error")

WSGIApp = Callable[..., Any]


class AppLoadError(Exception):
    """The app could not be imported or built; the message says which and why."""


# --- PasteDeploy INI ------------------------------------------------------------------------------

def _read_ini(path: str, **options: Any) -> configparser.ConfigParser:
    """A ConfigParser(**options) that has read `path`."""
    # Imported here: `pasteserve MODULE:APP` reads no INI, and a module the master imports
    # stays in every worker (about 270 KiB of RSS for this one).
    import configparser

    parser = configparser.ConfigParser(**options)
    parser.read(path)
    return parser


def ini_has_loggers(path: str) -> bool:
    return _read_ini(path, interpolation=None).has_section("loggers")


def configure_logging_from_ini(path: str) -> bool:
    """fileConfig the INI when it has [loggers], as pserve does; True when it did."""
    import logging.config

    if not ini_has_loggers(path):
        return False
    path = os.path.abspath(path)
    logging.config.fileConfig(path, {"here": os.path.dirname(path), "__file__": path},
                              disable_existing_loggers=False)
    return True


def find_server_section(path: str, name: str | None = None) -> str:
    """The server section the user means: the named one, else the one that uses pasteserve."""
    if name:
        return f"server:{name}"
    parser = _read_ini(path, interpolation=None)
    ours = [s for s in parser.sections()
            if s.startswith("server:") and "pasteserve" in parser.get(s, "use", fallback="")]
    return ours[0] if len(ours) == 1 else "server:main"


def server_options(local_conf: Mapping[str, Any], global_conf: Mapping[str, Any],
                   path: str | None, section: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The section's options, taking back the ones PasteDeploy moved into global_conf.

    PasteDeploy drops from a section every key that also appears in [DEFAULT] or in the global
    conf given by `pserve app.ini key=value`; such values reach us only through global_conf.
    A known option found there is used, and we remember where it came from.
    """
    raw = {k: v for k, v in local_conf.items()}
    sources = {k: f"[{section}]" for k in raw}
    own, defaults = _raw_section(path, section)
    for key, value in global_conf.items():
        if key in raw or not compat.known(key):
            continue
        if key in defaults and str(defaults[key]) == str(value):
            if key in own:
                value, sources[key] = own[key], f"[{section}] (also set in [DEFAULT])"
            else:
                sources[key] = "[DEFAULT]"
        else:
            sources[key] = "command line (key=value)"
        raw[key] = value
    return raw, sources


def _raw_section(path: str | None, section: str) -> tuple[dict[str, str], dict[str, str]]:
    """The section's own keys (interpolated) and the [DEFAULT] keys of the INI file."""
    if not path or not os.path.exists(path):
        return {}, {}
    here = os.path.dirname(os.path.abspath(path))
    parser = _read_ini(path, defaults={"here": here, "__file__": os.path.abspath(path)})
    apart = _read_ini(path, interpolation=None, default_section="\0none")
    own_keys = apart.options(section) if apart.has_section(section) else []
    own = {k: parser.get(section, k) for k in own_keys if parser.has_section(section)}
    return own, dict(parser.defaults())


class PasteSource:
    """App and settings from a PasteDeploy INI file."""

    def __init__(self, path: str, app_name: str | None = None, server_name: str | None = None,
                 global_conf: Mapping[str, str] | None = None, preloaded_app: WSGIApp | None = None,
                 cli_settings: Callable[[], Settings] | None = None) -> None:
        self.path = os.path.abspath(path)
        # `pasteserve --paste app.ini`: the flags, layered over the INI's server section.
        self.cli_settings = cli_settings
        self.app_name = app_name
        self.server_name = server_name
        self.global_conf = dict(global_conf or {})
        self.preloaded_app = preloaded_app
        # pserve imported the app's modules in this process: a reload rebuilds the app from the
        # INI, but forked workers inherit those modules, so it runs the same code (docs/signals.md).
        self.app_code_in_master = preloaded_app is not None
        self.name = os.path.basename(self.path)

    @property
    def section(self) -> str:
        return find_server_section(self.path, self.server_name)

    def settings(self) -> Settings:
        if self.cli_settings is not None:
            return self.cli_settings()
        return self.ini_settings()

    def uses_pasteserve(self) -> bool:
        parser = _read_ini(self.path, interpolation=None)
        return "pasteserve" in parser.get(self.section, "use", fallback="")

    def ini_settings(self, base: Settings | None = None) -> Settings:
        from paste.deploy.loadwsgi import SERVER, loadcontext

        section = self.section
        context = loadcontext(SERVER, "config:" + self.path, name=section.partition(":")[2],
                              global_conf=self.global_conf or None)
        return settings_for(context.local_conf, context.global_conf, self.path, section, base)

    def load_app(self) -> WSGIApp:
        if self.preloaded_app is not None:
            return self.preloaded_app
        from paste.deploy import loadapp

        try:
            return loadapp("config:" + self.path, name=self.app_name, global_conf=self.global_conf or None)
        except Exception as exc:
            raise AppLoadError(f"cannot load the app from {self.path}: {type(exc).__name__}: {exc}") from exc

    def forget_app(self) -> None:
        """After a reload, load the app afresh instead of reusing the one pserve handed us."""
        self.preloaded_app = None


def settings_for(local_conf: Mapping[str, Any], global_conf: Mapping[str, Any], path: str | None,
                 section: str, base: Settings | None = None) -> Settings:
    raw, sources = server_options(local_conf, global_conf, path, section)
    if base is None:
        base = compat.environment_settings(os.environ)
    origin = f"file {path}, section [{section}]" if path else f"section [{section}]"
    if raw.get("config"):
        config_path = str(raw["config"])
        if not os.path.isabs(config_path) and path:
            config_path = os.path.join(os.path.dirname(path), config_path)
        base = compat.load_config_file_settings(config_path, base)
    return compat.settings_from_mapping(raw, origin, "INI", base, key_sources=sources)


# --- MODULE:CALLABLE -----------------------------------------------------------------------------

def prepare_import(settings: Settings) -> None:
    """What must hold before the app is imported: `raw_env` in os.environ, `pythonpath` on sys.path."""
    for pair in settings.raw_env:
        key, _, value = pair.partition("=")
        os.environ[key.strip()] = value
    for directory in reversed(settings.pythonpath):
        directory = os.path.abspath(directory)
        if directory not in sys.path:
            sys.path.insert(0, directory)


class ImportSource:
    """App from `module:callable` (or `module:factory()`), settings from the command line."""

    def __init__(self, target: str, cli_settings: Callable[[], Settings]) -> None:
        self.target = target
        self._settings = cli_settings
        self.name = target
        self.app_code_in_master = False   # imported in each worker, unless preload_app

    def settings(self) -> Settings:
        return self._settings()

    def load_app(self) -> WSGIApp:
        return import_app(self.target)

    def forget_app(self) -> None:
        """Nothing to forget: each worker imports the app afresh (the master never imports it)."""


def import_app(target: str) -> WSGIApp:
    """Import `module:attr`, `module:attr.sub` or `module:factory()`; `module` alone means `module:application`."""
    module_name, _, attr = target.partition(":")
    attr = attr or "application"
    call = attr.endswith("()")
    attr = attr.removesuffix("()")
    if not module_name or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise AppLoadError(f"{target!r} is not MODULE:CALLABLE (e.g. myapp:app or mysite.wsgi:application)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if call:
        obj = obj()
    if not callable(obj):
        raise AppLoadError(f"{target!r} is not callable: {obj!r}")
    return obj

