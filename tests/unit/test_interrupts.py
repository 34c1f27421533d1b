"""The interrupt flags belong to the run (RunContext.interrupts), not to the module: a second run in the
same process starts uninterrupted, and a finished run puts back the signal handlers it replaced."""

import signal

import pytest

from pytest_celery_astra.run.interrupts import Interrupts

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def test_a_run_interrupted_does_not_interrupt_another_and_gives_the_handlers_back(capsys):
    before = {signum: signal.getsignal(signum) for signum in SIGNALS}
    first, second = Interrupts(), Interrupts()
    first.install(lambda: True)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and handler != before[signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            handler(signal.SIGTERM, None)
        handler(signal.SIGINT, None)  # a second signal while the cleanup runs: ignored, with a note
        assert "SIGINT ignored" in capsys.readouterr().err
        assert first.interrupted() and not second.interrupted()
    finally:
        first.cleanup_finished()  # also stops the watchdog the interrupt started
    assert {signum: signal.getsignal(signum) for signum in SIGNALS} == before


def test_with_nothing_to_clean_a_signal_behaves_as_before():
    interrupts = Interrupts()
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        interrupts.install(lambda: False)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert seen == [signal.SIGTERM] and not interrupts.interrupted()
        interrupts.cleanup_finished()
        assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGTERM) != interrupts._handle
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_shielded_cleanup_ignores_the_first_signal_too(capsys):
    interrupts = Interrupts()
    interrupts.install(lambda: True)
    try:
        interrupts.shield_cleanup()
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert "SIGINT ignored" in capsys.readouterr().err and not interrupts.interrupted()
    finally:
        interrupts.cleanup_finished()
