import logging
import sys
import textwrap

import pytest

from pasteserve.hooks import HOOK_ARGS, HOOK_NAMES, HookError, Hooks, load_callable, load_config_file

GUNICORN_HOOKS = {
    "on_starting": 1,
    "on_reload": 1,
    "when_ready": 1,
    "pre_fork": 2,
    "post_fork": 2,
    "post_worker_init": 1,
    "worker_int": 1,
    "worker_abort": 1,
    "pre_exec": 1,
    "pre_request": 2,
    "post_request": 4,
    "child_exit": 2,
    "worker_exit": 2,
    "nworkers_changed": 3,
    "on_exit": 1,
}


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throw-away importable package ``hookpkg`` with the given modules."""
    root = tmp_path / "hookpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> None:
        (root / f"{name}.py").write_text(textwrap.dedent(source))

    yield write
    for name in [m for m in sys.modules if m == "hookpkg" or m.startswith("hookpkg.")]:
        del sys.modules[name]


@pytest.fixture
def log():
    logger = logging.Logger("test.hooks")
    logger.records = []
    handler = logging.Handler()
    handler.emit = logger.records.append
    logger.addHandler(handler)
    return logger


def test_hook_names_and_arity_match_gunicorn():
    assert HOOK_NAMES == tuple(GUNICORN_HOOKS)
    assert {name: len(args) for name, args in HOOK_ARGS.items()} == GUNICORN_HOOKS


# --- load_callable ------------------------------------------------------------------------


def test_load_colon_and_dotted_forms(package):
    package("mod", "def hook(server): return 'ok'\nclass K:\n    @staticmethod\n    def m(): return 'm'\n")
    assert load_callable("hookpkg.mod:hook")(None) == "ok"
    assert load_callable("hookpkg.mod.hook")(None) == "ok"
    assert load_callable(" hookpkg.mod:K.m ")() == "m"
    assert load_callable("hookpkg.mod.K.m")() == "m"


def test_load_stdlib_dotted_name():
    import os.path

    assert load_callable("os.path.join") is os.path.join


@pytest.mark.parametrize(
    "spec, words",
    [
        ("nosuchmodule_xyz:f", "no module named 'nosuchmodule_xyz'"),
        ("nosuchmodule_xyz.f", "no module named 'nosuchmodule_xyz'"),
        ("hookpkg.mod:missing", "'hookpkg.mod' has no attribute 'missing'"),
        ("hookpkg.mod.missing", "'hookpkg.mod' has no attribute 'missing'"),
        ("hookpkg.mod:VALUE", "is not callable (it is a int)"),
        ("hookpkg.nomod:f", "no module named 'hookpkg.nomod'"),
        ("hookpkg.broken:f", "importing 'hookpkg.broken' failed: No module named 'not_installed_xyz'"),
        ("hookpkg.raises:f", "importing 'hookpkg.raises' failed: RuntimeError: at import"),
        ("justaname", "expected 'package.module:name'"),
        ("hookpkg.mod:", "expected 'package.module:name'"),
        (":f", "expected 'package.module:name'"),
        ("hookpkg.mod:a b", "expected 'package.module:name'"),
    ],
)
def test_load_errors_say_what_is_wrong(package, spec, words):
    package("mod", "VALUE = 3\n")
    package("broken", "import not_installed_xyz\n")
    package("raises", "raise RuntimeError('at import')\n")
    with pytest.raises(HookError) as caught:
        load_callable(spec)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- Hooks ----------------------------------------------------------------------------------


def test_call_runs_the_hook_and_returns_its_result(log):
    seen = []
    hooks = Hooks({"post_fork": lambda server, worker: seen.append((server, worker)) or "done"}, log)
    assert hooks.call("post_fork", "arbiter", "worker") == "done"
    assert seen == [("arbiter", "worker")]


def test_unset_hooks(log):
    hooks = Hooks({"when_ready": None}, log)
    assert not hooks.has("when_ready") and not hooks.has("on_exit")
    assert hooks.call("when_ready", "arbiter") is None


def test_hooks_given_as_strings_are_loaded(package, log):
    package("conf", "calls = []\ndef ready(server): calls.append(server)\n")
    hooks = Hooks({"when_ready": "hookpkg.conf:ready"}, log)
    assert hooks.has("when_ready")
    hooks.call("when_ready", "arbiter")
    assert sys.modules["hookpkg.conf"].calls == ["arbiter"]


def test_a_failing_hook_is_logged_not_raised(log):
    def pre_request(worker, req):
        raise KeyError("oops")

    hooks = Hooks({"pre_request": pre_request}, log)
    assert hooks.call("pre_request", "w", "r") is None
    [record] = log.records
    assert record.levelno == logging.ERROR
    assert "pre_request" in record.getMessage()
    assert record.exc_info[0] is KeyError


def test_system_exit_from_a_hook_is_not_swallowed(log):
    def worker_int(worker):
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        Hooks({"worker_int": worker_int}, log).call("worker_int", "w")


def test_unknown_hook_name_is_refused(log):
    with pytest.raises(HookError, match="unknown server hook 'post_forkk'"):
        Hooks({"post_forkk": print}, log)


def test_hook_with_wrong_arity_is_refused(log):
    with pytest.raises(HookError, match=r"'post_request' must accept 4 argument\(s\)"):
        Hooks({"post_request": lambda worker, req: None}, log)


def test_flexible_signatures_are_accepted(log):
    hooks = Hooks({"post_request": lambda *args: len(args), "pre_fork": lambda server, worker, extra=1: extra}, log)
    assert hooks.call("post_request", 1, 2, 3, 4) == 4
    assert hooks.call("pre_fork", 1, 2) == 1


def test_non_callable_hook_is_refused(log):
    with pytest.raises(HookError, match="'on_exit' is not callable"):
        Hooks({"on_exit": 5}, log)


# --- load_config_file ----------------------------------------------------------------------


def test_config_file_public_names(tmp_path):
    path = tmp_path / "pasteserve.conf.py"
    path.write_text(
        textwrap.dedent(
            """
            import os
            import multiprocessing as _mp
            workers = 2 * 2
            bind = ["127.0.0.1:0"]
            _private = 1
            here = os.path.dirname(__file__)

            def post_fork(server, worker):
                return helper()

            def helper():
                return workers
            """
        )
    )
    config = load_config_file(str(path))
    assert set(config) == {"workers", "bind", "here", "post_fork", "helper"}
    assert config["workers"] == 4 and config["here"] == str(tmp_path)
    # Functions keep the file's globals.
    assert config["post_fork"](None, None) == 4


@pytest.mark.parametrize(
    "source, words",
    [
        ("workers = = 2\n", "SyntaxError"),
        ("raise RuntimeError('bad config')\n", "RuntimeError: bad config"),
        ("import not_installed_xyz\n", "No module named 'not_installed_xyz'"),
    ],
)
def test_config_file_errors_name_the_file(tmp_path, source, words):
    path = tmp_path / "bad.conf.py"
    path.write_text(source)
    with pytest.raises(HookError) as caught:
        load_config_file(str(path))
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(HookError, match="missing.py: FileNotFoundError"):
        load_config_file(str(tmp_path / "missing.py"))
