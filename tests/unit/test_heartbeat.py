import os
import time

import pytest

from pasteserve.heartbeat import Heartbeat, SlotAllocator


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


def test_retiring_is_per_slot_and_reset_clears_it(heartbeat):
    heartbeat.beat(1)
    heartbeat.retire(1)
    assert [heartbeat.retiring(slot) for slot in range(4)] == [False, True, False, False]
    assert heartbeat.last(1) > 0.0   # the beat is untouched
    heartbeat.reset(1)
    assert not heartbeat.retiring(1)
