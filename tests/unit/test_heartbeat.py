import os
import time

import pytest

from pasteserve.heartbeat import Heartbeat, SlotAllocator, read_status


@pytest.fixture
def heartbeat():
    hb = Heartbeat(slots=4)
    yield hb
    hb.close()


def test_unused_slots_never_beat(heartbeat):
    assert [heartbeat.last(slot) for slot in range(4)] == [0.0] * 4


def test_beat_records_monotonic_time(heartbeat):
    before = time.monotonic()
    heartbeat.beat(2)
    after = time.monotonic()
    assert before <= heartbeat.last(2) <= after
    assert heartbeat.last(1) == 0.0


def test_beat_can_record_an_earlier_moment(heartbeat):
    # The gthread worker beats with the last progress of its oldest busy thread.
    earlier = time.monotonic() - 5.0
    heartbeat.beat(1, earlier)
    assert heartbeat.last(1) == earlier


def test_reset_sets_now(heartbeat):
    before = time.monotonic()
    heartbeat.reset(3)
    assert heartbeat.last(3) >= before


@pytest.mark.parametrize("slot", [-1, 4, 100])
def test_out_of_range_slots_are_refused(heartbeat, slot):
    with pytest.raises(IndexError, match=f"slot {slot} out of range 0..3"):
        heartbeat.beat(slot)
    with pytest.raises(IndexError):
        heartbeat.last(slot)


def test_needs_a_slot():
    with pytest.raises(ValueError):
        Heartbeat(slots=0)


def test_beats_cross_fork(heartbeat):
    heartbeat.reset(1)
    reset_at = heartbeat.last(1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: beat, report the value it wrote, exit without running pytest
        code = 1
        try:
            os.close(read)
            heartbeat.beat(1)
            os.write(write, repr(heartbeat.last(1)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            child_beat = float(pipe.read())
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert heartbeat.last(1) == child_beat
    assert child_beat >= reset_at
    assert heartbeat.last(0) == 0.0


def test_allocator_hands_out_the_lowest_free_slot():
    slots = SlotAllocator(3)
    assert [slots.acquire(), slots.acquire(), slots.acquire()] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="all 3 worker slots are in use"):
        slots.acquire()
    slots.release(2)
    slots.release(0)
    assert slots.acquire() == 0
    assert slots.acquire() == 2


def test_allocator_refuses_releasing_a_free_slot():
    slots = SlotAllocator(2)
    with pytest.raises(ValueError, match="slot 1 is not in use"):
        slots.release(1)
    slots.release(slots.acquire())
    with pytest.raises(ValueError, match="slot 0 is not in use"):
        slots.release(0)


# --- the status map read from outside ---------------------------------------------------------------

def test_status_map_round_trip(tmp_path):
    path = str(tmp_path / "map.status")
    hb = Heartbeat(slots=4, path=path)
    try:
        hb.describe_master(1234, "app.ini")
        hb.master_beat(2, 3, 7)
        hb.reset(1)
        hb.assign(1, 4321, 2)
        hb.writer(1).request_done(2)
        hb.writer(1).connections(5)
        hb.set_dropped(1, 9)
        hb.writer(1).show_request(time.monotonic() - 3.0, ("POST /upload/" + "é" * 200).encode())
        hb.reset(2)
        hb.assign(2, 4322, 1)
        hb.set_stopping(2)
        report = read_status(path)
        master = report["master"]
        assert (master["pid"], master["name"], master["generation"], master["workers_wanted"],
                master["metrics_dropped"]) == (1234, "app.ini", 2, 3, 7)
        first, second = report["workers"]
        assert (first["pid"], first["slot"], first["generation"], first["requests"], first["connections"],
                first["metrics_dropped"]) == (4321, 1, 2, 2, 5, 9)
        assert first["request"]["method"] == "POST" and first["request"]["path"].startswith("/upload/éé")
        assert 3.0 <= first["request"]["seconds"] < 10
        assert 0 <= second["stopping"] < 10 and second["request"] is None and first["stopping"] is None
        hb.writer(1).request_done(3, time.monotonic() - 1.0, b"GET /next")
        (first, _) = read_status(path)["workers"]
        assert first["requests"] == 3 and first["request"]["path"] == "/next"
        hb.writer(1).request_done(4)
        hb.free(2)
        (only,) = read_status(path)["workers"]
        assert only["pid"] == 4321 and only["request"] is None and only["requests"] == 4
    finally:
        hb.close()
    assert not os.path.exists(path)


def test_a_file_that_is_not_a_map_is_refused(tmp_path):
    path = tmp_path / "other"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="not a pasteserve status map"):
        read_status(str(path))


def test_a_stale_map_of_the_same_pid_is_replaced(tmp_path):
    path = tmp_path / "map.status"
    path.write_bytes(b"left over by a killed master")
    hb = Heartbeat(slots=2, path=str(path))
    try:
        assert read_status(str(path))["workers"] == []
    finally:
        hb.close()


def test_stopping_is_per_slot_and_reset_clears_it(heartbeat):
    heartbeat.beat(1)
    heartbeat.set_stopping(1)
    assert [heartbeat.retiring(slot) for slot in range(4)] == [False, True, False, False]
    assert heartbeat.last(1) > 0.0   # the beat is untouched
    heartbeat.reset(1)
    assert not heartbeat.retiring(1)


def test_fewest_connections_counts_only_siblings_able_to_take_more():
    hb = Heartbeat(slots=8)
    try:
        hb.master_beat(1, 3, 0)   # 3 workers wanted: slots 0..7 read
        for slot, pid, held in ((0, 100, 9), (1, 101, 3), (2, 102, 5), (3, 103, 1)):
            hb.reset(slot)
            hb.assign(slot, pid, 1)
            hb.writer(slot).connections(held)
        hb.set_stopping(3)   # the fewest, but leaving
        assert hb.fewest_connections(0, None) == 3
        assert hb.fewest_connections(1, None) == 5   # never itself
        now = time.monotonic()
        hb.writer(1).show_request(now - 1.0, b"GET /slow")   # inside one request for a second
        assert hb.fewest_connections(0, now - 0.02) == 5
        assert hb.fewest_connections(0, None) == 3   # busy or not does not matter to a thread pool
        hb.free(1)
        hb.free(2)
        assert hb.fewest_connections(0, None) is None
    finally:
        hb.close()


def test_fewest_connections_leaves_out_a_silent_sibling():
    """One that has not beaten for a while cannot be accepting (an eventlet worker whose app
    blocks its hub): leaving the backlog to it would leave it to nobody."""
    hb = Heartbeat(slots=4)
    try:
        hb.master_beat(1, 2, 0)
        now = time.monotonic()
        for slot, held in ((0, 9), (1, 3)):
            hb.reset(slot)
            hb.assign(slot, 100 + slot, 1)
            hb.writer(slot).connections(held)
        assert hb.fewest_connections(0, None, now - 0.5) == 3
        hb.beat(1, now - 1.0)
        assert hb.fewest_connections(0, None, now - 0.5) is None
        assert hb.fewest_connections(0, None) == 3   # silence counts only when asked
    finally:
        hb.close()
