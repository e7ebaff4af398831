"""Server hooks: user callables run at points of the master's and workers' lives.

Names and arguments follow Gunicorn's, so its hook code runs unchanged:

=================  =====================================  ==========================================
hook               arguments                              called
=================  =====================================  ==========================================
on_starting        (server)                               master, before the listeners are bound
on_reload          (server)                               master, on HUP before new workers start
when_ready         (server)                               master, once listening, before forking
pre_fork           (server, worker)                       master, just before forking a worker
post_fork          (server, worker)                       worker, right after the fork
post_worker_init   (worker)                               worker, after the app is loaded
worker_int         (worker)                               worker, on INT or QUIT
worker_abort       (worker)                               worker, on ABRT (the master's timeout)
pre_exec           (server)                               master, before exec of a new master (USR2)
pre_request        (worker, req)                          worker, before the app is called
post_request       (worker, req, environ, resp)           worker, after the response is sent
child_exit         (server, worker)                       master, after a worker was reaped
worker_exit        (server, worker)                       worker, just before it exits
nworkers_changed   (server, new_value, old_value)         master, after the worker count changed
on_exit            (server)                               master, just before it exits
=================  =====================================  ==========================================

``server`` is the arbiter (``log``, ``cfg``, ``pid``, ``num_workers``, ``WORKERS``), ``worker``
the worker object (``log``, ``pid``, ``ppid``, ``age``, ``cfg``, ``alive``), ``req`` a
`HookRequest` (Gunicorn's request attributes) and ``resp`` the response the connection sent
(``status``, ``status_code``, ``headers``, ``sent``); ``old_value`` is None the first time
``nworkers_changed`` runs.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types
from collections.abc import Callable
from typing import Any

HOOK_ARGS: dict[str, tuple[str, ...]] = {
    "on_starting": ("server",),
    "on_reload": ("server",),
    "when_ready": ("server",),
    "pre_fork": ("server", "worker"),
    "post_fork": ("server", "worker"),
    "post_worker_init": ("worker",),
    "worker_int": ("worker",),
    "worker_abort": ("worker",),
    "pre_exec": ("server",),
    "pre_request": ("worker", "req"),
    "post_request": ("worker", "req", "environ", "resp"),
    "child_exit": ("server", "worker"),
    "worker_exit": ("server", "worker"),
    "nworkers_changed": ("server", "new_value", "old_value"),
    "on_exit": ("server",),
}
HOOK_NAMES: tuple[str, ...] = tuple(HOOK_ARGS)


class HookRequest:
    """A request as Gunicorn's pre_request/post_request hooks see it.

    `method`, `uri`, `path`, `query`, `fragment`, `version` (a tuple), `headers` (a list of
    (UPPER-NAME, value)) and `scheme`; anything else is the parsed request's own attribute.
    """

    def __init__(self, req: Any, environ: dict) -> None:
        from urllib.parse import urlsplit

        self._req = req
        self.method = req.method
        self.uri = req.target
        parts = urlsplit(req.target) if req.target != "*" else None
        self.path = parts.path if parts else "*"
        self.query = parts.query if parts else ""
        self.fragment = parts.fragment if parts else ""
        self.version = req.version
        self.headers = req.headers
        self.scheme = environ.get("wsgi.url_scheme", "http")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._req, name)

    def __repr__(self) -> str:
        return f"<HookRequest {self.method} {self.uri}>"


class HookError(ValueError):
    """A hook or a Python config file could not be loaded; the message says why."""


_SPEC_FORMS = "expected 'package.module:name' or 'package.module.name'"


def load_callable(spec: str) -> Callable:
    """Load ``package.module:attr.path`` or ``package.module.attr``; HookError if impossible."""
    spec = spec.strip()
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
        if not _dotted_name(module_name):
            raise HookError(f"{spec!r}: {_SPEC_FORMS}")
        module = _import(module_name, spec)
        if module is None:
            raise HookError(f"{spec!r}: no module named {module_name!r}")
    else:
        module, attr_path = _import_longest_prefix(spec)
    if not _dotted_name(attr_path):
        raise HookError(f"{spec!r}: {_SPEC_FORMS}")
    target: Any = module
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            owner = getattr(target, "__name__", type(target).__name__)
            raise HookError(f"{spec!r}: {owner!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise HookError(f"{spec!r} is not callable (it is a {type(target).__name__})")
    return target


def _dotted_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _import(module_name: str, spec: str) -> types.ModuleType | None:
    """Import a module named in ``spec``; None when no such module exists."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Tell "there is no such module" from a missing import inside an existing one.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            return None
        raise HookError(f"{spec!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise HookError(f"{spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None


def _import_longest_prefix(spec: str) -> tuple[types.ModuleType, str]:
    """Import the longest module prefix of a dotted name; return it and the attribute path."""
    parts = spec.split(".")
    if len(parts) < 2 or not _dotted_name(spec):
        raise HookError(f"{spec!r}: {_SPEC_FORMS}")
    for cut in range(len(parts) - 1, 0, -1):
        module = _import(".".join(parts[:cut]), spec)
        if module is not None:
            return module, ".".join(parts[cut:])
    raise HookError(f"{spec!r}: no module named {parts[0]!r}")


class Hooks:
    """The configured hooks; calling one never lets its exception escape."""

    def __init__(self, hooks: dict[str, Callable | str | None], log: logging.Logger) -> None:
        self._log = log
        self._hooks: dict[str, Callable | None] = dict.fromkeys(HOOK_NAMES)
        for name, value in hooks.items():
            if name not in HOOK_ARGS:
                raise HookError(f"unknown server hook {name!r}; known hooks: {', '.join(HOOK_NAMES)}")
            hook = load_callable(value) if isinstance(value, str) else value
            if hook is not None:
                _check_arity(name, hook)
            self._hooks[name] = hook

    def has(self, name: str) -> bool:
        return self._hooks[name] is not None

    def call(self, name: str, *args: Any) -> Any:
        """Run hook ``name`` if set and return its result; None if unset or it raised.

        Exceptions are logged with their traceback. BaseExceptions that are not
        Exceptions (SystemExit, eventlet's Timeout, GreenletExit) are deliberate
        control flow and pass through.
        """
        hook = self._hooks[name]
        if hook is None:
            return None
        try:
            return hook(*args)
        except Exception:
            self._log.exception("Exception in %s hook %r", name, hook)
            return None


def _check_arity(name: str, hook: Callable) -> None:
    """Refuse at load time a hook that could not take its arguments (Gunicorn does too)."""
    if not callable(hook):
        raise HookError(f"server hook {name!r} is not callable (it is a {type(hook).__name__})")
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    args = HOOK_ARGS[name]
    try:
        signature.bind(*args)
    except TypeError:
        raise HookError(
            f"server hook {name!r} must accept {len(args)} argument(s) ({', '.join(args)}); "
            f"{getattr(hook, '__qualname__', hook)!r} has signature {signature}"
        ) from None


def load_config_file(path: str) -> dict[str, Any]:
    """Run a Python config file (Gunicorn's ``gunicorn.conf.py``) and return its settings.

    The result holds the public names it defines: no modules, nothing starting with "_".
    ``python:package.module`` names an importable module instead of a file, as in Gunicorn.
    """
    if path.startswith("python:"):
        try:
            module = importlib.import_module(path.removeprefix("python:"))
            namespace = vars(importlib.reload(module))
        except Exception as exc:
            raise HookError(f"{path}: {type(exc).__name__}: {exc}") from None
        return _public(namespace)
    try:
        with open(path, "rb") as file:
            source = file.read()
        code = compile(source, path, "exec")
        namespace: dict[str, Any] = {"__file__": path, "__name__": "__config__"}
        exec(code, namespace)
    except Exception as exc:
        raise HookError(f"{path}: {type(exc).__name__}: {exc}") from None
    return _public(namespace)


def _public(namespace: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
