"""The process-wide helpers of hyper.core.threads: the paused collector and reading ahead."""

import gc
import threading

import pytest

from hyper.core.threads import collection_paused, read_ahead


def test_the_collector_resumes_when_the_last_of_several_threads_leaves():
    assert gc.isenabled()
    inside, leave = threading.Barrier(3), threading.Event()

    def hold():
        with collection_paused():
            inside.wait()
            leave.wait()

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    inside.wait()
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the two threads still hold it
    leave.set()
    for holder in holders:
        holder.join()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_reading_ahead_gives_every_item_in_order_and_passes_errors_on():
    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
    assert list(read_ahead(iter([]))) == []

    def failing():
        yield 1
        raise ValueError("row 2 is bad")

    items = read_ahead(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="row 2"):
        next(items)


def test_a_consumer_that_stops_early_leaves_no_item_being_made():
    made = []

    def counted():
        for k in range(100):
            made.append(k)
            yield k

    items = read_ahead(counted())
    assert next(items) == 0
    items.close()  # waits for the one item made ahead, then stops
    assert made == [0, 1]
