"""A short run of the chaos soak (benchmarks/soak.py): load, signals, SIGKILLs and hostile clients at once.

No timing is asserted: only that nothing failed except requests in flight on a killed worker, that
every kind of chaos ran, and that the server answered and left nothing running afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.soak import ACTIONS
from tests.server import REPO


@pytest.mark.parametrize("worker_class", ["sync", "eventlet"])
def test_chaos_soak_smoke(tmp_path, worker_class):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--duration", "12", "--interval", "1",
                           "--worker-class", worker_class, "--seed", "8", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.exists(), done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["disallowed"] == 0, done.stdout
    assert result["served_total"] > 0 and all(result["served"].get(kind) for kind in
                                              ("keepalive", "close", "upload", "stream")), done.stdout
    assert set(result["chaos"]) == set(ACTIONS), done.stdout
    assert not [e for e in result["events"] if "fail" in e["detail"] or "did not" in e["detail"]], done.stdout
    assert result["answered_at_end"] and result["strays_after_stop"] == 0, done.stdout
    assert result["tracebacks_in_error_log"] == 0, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
