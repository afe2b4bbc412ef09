"""The garbage collector pause: held by overlapping requests, resumed by the last one out, and
never turned on where it was off."""

import gc
import threading

from hyper.core.collector import collector_paused


def test_overlapping_holders_resume_the_collector_only_when_the_last_leaves():
    assert gc.isenabled()
    first_in, second_out = threading.Event(), threading.Event()
    seen = []

    def second():
        first_in.wait()
        with collector_paused():
            seen.append(gc.isenabled())
        second_out.set()

    worker = threading.Thread(target=second)
    worker.start()
    with collector_paused():
        first_in.set()
        second_out.wait()
        seen.append(gc.isenabled())  # the second holder left; this one still holds it
    worker.join()
    assert seen == [False, False] and gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
