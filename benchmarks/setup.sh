#!/bin/sh
# Prepare the benchmark tools. Idempotent: safe to run before every benchmark.
#   wrk                 from Debian, only when it is missing
#   gunicorn, waitress  the `bench` extra of pyproject.toml, into the repo's .venv,
#                       only when they are missing
#   gunicorn 23.0.0     the last Gunicorn with an eventlet worker, in .venv-gunicorn23 of its own
#                       (the gunicorn23-eventlet rows and benchmarks/websocket.py)
set -eu

repo="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update
    $sudo apt-get install -y wrk
fi

if [ ! -x "$repo/.venv/bin/pip" ]; then
    echo "setup.sh: $repo/.venv is missing; create it first (python3 -m venv .venv)" >&2
    exit 1
fi
# Reinstalling would rebuild the editable pasteserve install under everyone's feet: only
# do it when a benchmark dependency is missing.
if ! "$repo/.venv/bin/python" -c 'import gunicorn, waitress' 2>/dev/null; then
    "$repo/.venv/bin/pip" install -q -e "$repo[bench]"
fi

if [ ! -x "$repo/.venv-gunicorn23/bin/gunicorn" ]; then
    python3 -m venv "$repo/.venv-gunicorn23"
    "$repo/.venv-gunicorn23/bin/pip" install -q --disable-pip-version-check gunicorn==23.0.0 eventlet
fi

echo "wrk: $(command -v wrk)"
"$repo/.venv/bin/python" -c '
from importlib.metadata import version
print("gunicorn", version("gunicorn"), "/ waitress", version("waitress"))'
"$repo/.venv-gunicorn23/bin/python" -c '
from importlib.metadata import version
print("gunicorn (eventlet rows)", version("gunicorn"), "/ eventlet", version("eventlet"))'
