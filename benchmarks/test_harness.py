"""Tests of the benchmark harness itself; ./scripts/test (and so CI) runs them with the suite."""

import io
import os
import re
import shutil
import socket
import sys
import urllib.request
from dataclasses import replace
from wsgiref.validate import validator

import pytest

from benchmarks import apps, burst, report, run, servers, syscalls, wrk

KEEPALIVE_REPORT = """\
Running 8s test @ http://127.0.0.1:40000/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.03ms  31.20ms   88.12%
    Req/Sec    11.95k   812.33    13.40k    71.25%
  Latency Distribution
     50%    1.92ms
     75%    2.41ms
     90%    3.05ms
     99%    5.87ms
  190321 requests in 8.00s, 26.50MB read
Requests/sec:  23786.41
Transfer/sec:      3.31MB
"""

TROUBLED_REPORT = """\
Running 8s test @ http://127.0.0.1:40000/
  2 threads and 200 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.40us  301.12us   1.98s    95.00%
    Req/Sec    60.11     20.10    90.00     70.00%
  Latency Distribution
     50%  640.00us
     75%  900.00us
     90%    1.20ms
     99%    1.50s
  950 requests in 8.02s, 120.00KB read
  Socket errors: connect 3, read 12, write 0, timeout 40
  Non-2xx or 3xx responses: 7
Requests/sec:    118.45
Transfer/sec:     14.96KB
"""

NOTHING_ANSWERED_REPORT = """\
Running 2s test @ http://127.0.0.1:40000/
  2 threads and 200 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 2.01s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_parse_keepalive_report():
    result = wrk.parse(KEEPALIVE_REPORT)
    assert result.requests == 190321
    assert result.requests_per_sec == pytest.approx(23786.41)
    assert result.p50_ms == pytest.approx(1.92)
    assert result.p99_ms == pytest.approx(5.87)
    assert result.errors == {}


def test_parse_units_and_error_lines():
    result = wrk.parse(TROUBLED_REPORT)
    assert result.p50_ms == pytest.approx(0.64)
    assert result.p99_ms == pytest.approx(1500.0)
    assert result.errors == {"status>=400": 7, "connect": 3, "read": 12, "timeout": 40}


def test_parse_without_any_answer_has_no_percentiles():
    result = wrk.parse(NOTHING_ANSWERED_REPORT)
    assert (result.requests, result.p50_ms, result.p99_ms) == (0, None, None)


def test_parse_rejects_foreign_output():
    with pytest.raises(wrk.WrkError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_command_builds_every_option(tmp_path):
    script = tmp_path / "post.lua"
    load = wrk.Load(
        url="http://127.0.0.1:1/", duration=8, connections=50, threads=2, timeout=2,
        headers=("Connection: close",), script=script,
    )
    assert wrk.command(load, prefix=("taskset", "-c", "1")) == [
        "taskset", "-c", "1", "wrk", "--latency", "-t", "2", "-c", "50", "-d", "8s",
        "--timeout", "2s", "-H", "Connection: close", "-s", str(script), "http://127.0.0.1:1/",
    ]


def test_command_never_asks_more_threads_than_connections():
    load = wrk.Load(url="http://127.0.0.1:1/", duration=1, connections=1, threads=4, timeout=2)
    argv = wrk.command(load)
    assert argv[argv.index("-t") + 1] == "1"


def test_command_rejects_durations_wrk_cannot_express():
    load = wrk.Load(url="http://127.0.0.1:1/", duration=0, connections=1, threads=1, timeout=2)
    with pytest.raises(ValueError):
        wrk.command(load)


def test_post_script_sends_the_body_size():
    script = wrk.post_script(1024)
    assert 'wrk.method = "POST"' in script
    assert 'string.rep("x", 1024)' in script


def _result(rate: float) -> wrk.WrkResult:
    return wrk.WrkResult(
        requests=int(rate * 8), requests_per_sec=rate, p50_ms=0.5, p99_ms=250.0,
        bad_status=0, connect_errors=0, read_errors=2, write_errors=0, timeouts=0,
    )


def test_table_ratios_against_each_scenarios_baseline():
    rows = [
        report.Row("hello", "gunicorn-sync", "2 proc", _result(2000.0)),
        report.Row("hello", "waitress", "1 proc × 4 thr", _result(1000.0)),
        report.Row("hello", "pasteserve-sync", "2 proc", None, "failed: wrk exited with 1"),
        report.Row("sleep", "gunicorn-gthread", "2 proc × 4 thr", _result(160.0)),
        report.Row("sleep", "waitress", "1 proc × 4 thr", _result(80.0)),
    ]
    baselines = {"hello": "gunicorn-sync", "sleep": "gunicorn-gthread"}
    lines = report.table(rows, baselines).splitlines()
    assert lines[0].startswith("| scenario | server | req/s | rounds' range | p50 | p99 | errors |")
    assert lines[2] == (
        "| hello | gunicorn-sync (2 proc) | 2,000 | – | 500 µs | 250 ms | read 2 | – "
        "| 1.00 (baseline) | – |"
    )
    assert lines[3].endswith("| 0.50 | – |")
    assert lines[4] == (
        "| hello | pasteserve-sync (2 proc) | – | – | – | – | failed: wrk exited with 1 "
        "| – | – | – |"
    )
    assert lines[5].endswith("| 1.00 (baseline) | – |")
    assert lines[6].endswith("| 0.50 | – |")


def test_table_without_baseline_has_no_ratio():
    rows = [report.Row("hello", "waitress", "1 proc × 4 thr", _result(1000.0))]
    assert report.table(rows, {"hello": "gunicorn-sync"}).splitlines()[2].endswith("| – | – |")


def test_table_shows_the_fraction_of_the_ceiling_and_worker_memory():
    rows = [
        report.Row("hello", "bare-loop", "2 proc, no checks", _result(4000.0), rss_mib=11.5),
        report.Row("hello", "pasteserve-sync", "2 proc", _result(3000.0), rss_mib=20.25),
    ]
    lines = report.table(rows, {"hello": "gunicorn-sync"}).splitlines()
    assert lines[2].endswith("| 11.5 MiB | – | – |")   # the ceiling is not a fraction of itself
    assert lines[3].endswith("| 20.2 MiB | – | 0.75 |")


def test_median_of_rounds_takes_middle_figures_and_counts_every_error():
    slow = replace(_result(1000.0), p50_ms=0.9, p99_ms=300.0, timeouts=1)
    fast = replace(_result(3000.0), p50_ms=0.3, p99_ms=None)
    middle = wrk.median([fast, _result(2000.0), slow])
    assert middle.requests_per_sec == 2000.0
    assert middle.p50_ms == 0.5
    assert middle.p99_ms == 275.0   # the round without a p99 leaves it to the others
    assert middle.requests == 48000
    assert (middle.read_errors, middle.timeouts) == (6, 1)
    with pytest.raises(ValueError):
        wrk.median([])


def test_table_shows_the_rounds_range_and_a_round_that_failed():
    rows = [report.Row("hello", "waitress", "1 proc × 4 thr", _result(1000.0),
                       "failed in 1 of 3 rounds: wrk exited with 1", rates=(1200.0, 950.4))]
    line = report.table(rows, {"hello": "gunicorn-sync"}).splitlines()[2]
    assert line.startswith("| hello | waitress (1 proc × 4 thr) | 1,000 | 950–1,200 | 500 µs |")
    assert "| read 2; failed in 1 of 3 rounds: wrk exited with 1 |" in line


def test_burst_table_takes_the_median_of_the_rounds():
    rounds = (burst.BurstResult(3, (1.0, 2.0, 9.0), 0), burst.BurstResult(3, (1.0, 4.0), 1),
              burst.BurstResult(3, (3.0, 5.0, 7.0), 0))
    rows = [report.BurstRow("pasteserve-sync", "2 proc", rounds),
            report.BurstRow("waitress", "1 proc × 4 thr", (), "failed: no such app")]
    lines = report.burst_table(rows).splitlines()
    assert lines[2] == "| pasteserve-sync (2 proc) | 3 | 2.50 ms | 7.00 ms | 1 |"
    assert lines[3] == "| waitress (1 proc × 4 thr) | – | – | – | failed: no such app |"


def test_strace_summary_total_is_read_with_or_without_an_errors_column():
    summary = (
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 60.00    0.060000           1     40000           sendto\n"
        " 40.00    0.040000           1     40002         2 recvfrom\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.100000           1     80002         2 total\n"
    )
    assert syscalls.parse_total(summary) == 80002
    assert syscalls.parse_total("100.00    0.100000           1     80000           total\n") == 80000
    with pytest.raises(syscalls.CountError):
        syscalls.parse_total("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")


def test_perf_stat_count_is_read_from_its_csv_output():
    output = "# started on Tue Dec  1 18:00:00 2026\n\n415728,,raw_syscalls:sys_enter,3003059108,100.00,,\n"
    assert syscalls.parse_perf(output) == 415728
    with pytest.raises(syscalls.CountError):
        syscalls.parse_perf("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n")


def test_burst_times_every_client_against_a_real_server():
    with servers.running(servers.SERVERS["bare-loop"], "benchmarks.apps:work2ms", workers=1) as live:
        result = burst.measure(live.port, clients=10)
    assert result.errors == 0
    assert len(result.first_answers_ms) == 10
    assert result.median_ms <= result.slowest_ms


def test_burst_counts_refused_clients_as_errors():
    port = servers.free_port()   # nothing listens there
    result = burst.measure(port, clients=3, timeout=2)
    assert (result.errors, result.first_answers_ms, result.slowest_ms) == (3, (), None)


def test_bare_loop_answers_keep_alive_and_close():
    with servers.running(servers.SERVERS["bare-loop"], "benchmarks.apps:hello", workers=2) as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            answers = _read_until(sock, lambda data: data.count(b"Hello, World!") == 2)
            assert answers.count(b"HTTP/1.1 200 OK") == 2
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            last = _read_until(sock, lambda data: False)   # to EOF: the loop closed it
    assert b"Connection: close" in last and last.endswith(b"Hello, World!")


def _read_until(sock, done):
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _call(app, method="GET", body=b""):
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=dict(headers))
        return lambda data: None

    iterable = validator(app)(environ, start_response)
    try:
        pieces = list(iterable)
    finally:
        iterable.close()
    return started["status"], started["headers"], pieces


@pytest.mark.parametrize(
    "app, size", [(apps.hello, 13), (apps.big, 1024 * 1024), (apps.sleep, 13)]
)
def test_fixed_length_apps(app, size):
    status, headers, pieces = _call(app)
    assert status == "200 OK"
    assert headers["Content-Length"] == str(size)
    assert len(b"".join(pieces)) == size


def test_echo_answers_the_body_length():
    assert _call(apps.echo, "POST", b"x" * 1024)[2] == [b"1024"]


def test_chunked_yields_three_pieces_without_length():
    status, headers, pieces = _call(apps.chunked)
    assert "Content-Length" not in headers
    assert pieces == list(apps.CHUNKS)


def test_running_server_answers_then_stops_with_its_workers():
    server = servers.SERVERS["waitress"]
    with servers.running(server, "benchmarks.apps:echo", workers=1) as live:
        with urllib.request.urlopen(live.url, data=b"x" * 100, timeout=10) as response:
            answer = response.read()
        pid = live.pid
    assert answer == b"100"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_a_server_that_exits_is_reported_not_runnable():
    dies = servers.Server(
        "dies", "python", lambda port, app, workers: ["-c", "raise SystemExit('no such app')"],
        lambda workers: "none",
    )
    with pytest.raises(servers.NotRunnable, match="exited with 1: no such app"):
        with servers.running(dies, "benchmarks.apps:hello", workers=1):
            pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing: run benchmarks/setup.sh")
def test_full_run_writes_a_table(tmp_path, capsys):
    output = tmp_path / "latest.md"
    code = run.main([
        "--duration", "1", "--warmup", "0", "--connections", "4", "--threads", "1",
        "--rounds", "2", "--scenarios", "post", "--servers", "waitress", "--output", str(output),
    ])
    assert code == 0
    table = output.read_text()
    assert "2 rounds, the servers taking turns" in table
    assert re.search(r"\| post \| waitress \(1 proc × 4 thr\) \| [\d,]+ \| [\d,]+–[\d,]+ \|", table)
    printed = capsys.readouterr().out
    assert "post / waitress (round 2/2) ..." in printed
    assert table in printed


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing: run benchmarks/setup.sh")
def test_smoke_run_of_pasteserve_beside_a_peer_and_the_ceiling(tmp_path):
    """CI's few-second run of the real harness, so it cannot rot between full runs.

    Nothing here is timed: it only checks that every row was measured.
    """
    output = tmp_path / "latest.md"
    code = run.main([
        "--duration", "1", "--warmup", "0", "--connections", "8", "--threads", "1",
        "--rounds", "1", "--scenarios", "hello", "burst", "--servers", "pasteserve-sync", "gunicorn-sync",
        "bare-loop", "--output", str(output),
    ])
    assert code == 0
    document = output.read_text()
    hello = [line for line in document.splitlines() if line.startswith("| hello |")]
    assert len(hello) == 3 and not any("failed" in line for line in hello), document
    pasteserve = next(line for line in hello if "pasteserve-sync" in line)
    assert re.search(r"MiB \| [\d.]+ \| [\d.]+ \|$", pasteserve), pasteserve
    bursts = [line for line in document.splitlines() if line.startswith("| pasteserve-sync (2 proc) | 50 |")]
    assert len(bursts) == 1 and bursts[0].endswith("| 0 |"), document


def test_failure_reason_prefers_the_exception_over_later_log_lines():
    log = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ModuleNotFoundError: No module named 'pasteserve.http.parser'\n"
        "\n"
        "[2026-01-01 00:00:00 +0000] [7] [INFO] Shutting down: master (pid 7)\n"
    )
    reason = servers.failure_reason(log)
    assert reason == "ModuleNotFoundError: No module named 'pasteserve.http.parser'"


def test_failure_reason_without_exception_is_the_last_line():
    log = "[INFO] Booting\n[INFO] Shutting down\n\n"
    assert servers.failure_reason(log) == "[INFO] Shutting down"


def test_engine_benchmark_runs_and_checks_its_answers(capsys):
    from benchmarks import engine

    assert engine.main(["--requests", "20", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["browser", "close", "post", "wrk"]
    assert all(re.fullmatch(r"\w+ +[\d.]+ µs per request", line) for line in lines), lines
    # The loop really serves: every request gets the same complete keep-alive answer.
    conn, sock = engine.connection("browser")
    for _ in range(3):
        assert conn.process()
    undated = {re.sub(rb"Date: [^\r]*\r\n", b"", answer) for answer in sock.sent}
    assert len(sock.sent) == 3 and len(undated) == 1, sock.sent
    assert sock.sent[0].endswith(b"Content-Length: 13\r\n\r\nHello, World!")


def test_engine_benchmark_refuses_to_measure_a_wrong_answer(monkeypatch):
    from benchmarks import engine

    monkeypatch.setitem(engine.HEADS, "wrk", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    with pytest.raises(AssertionError):
        engine.main(["--head", "wrk", "--requests", "1", "--repeat", "1"])
    monkeypatch.setitem(engine.HEADS, "close", b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(AssertionError):
        engine.main(["--head", "close", "--requests", "1", "--repeat", "1"])


def test_cpu_per_request_of_one_worker(capsys):
    from benchmarks import cpu

    user, system = cpu.cpu_seconds(os.getpid())
    assert user > 0 and system >= 0
    assert cpu.main(["--servers", "pasteserve-sync", "--duration", "1", "--warmup", "0"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"\| pasteserve-sync \| [\d,]+ \| [\d.]+ \| [\d.]+ \|", row), row


def test_cpu_instructions_client_sends_exactly_the_requests_asked():
    # What --instructions subtracts is exact counts of requests (valgrind itself is too slow here).
    from benchmarks import cpu, servers

    with servers.running(servers.SERVERS["pasteserve-eventlet"], "benchmarks.apps:hello", workers=1) as live:
        assert cpu.drive(live.port, 3, 10) == 10
        assert cpu.drive(live.port, 4, 2) == 2   # more connections than requests
