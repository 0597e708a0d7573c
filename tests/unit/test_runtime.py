"""Process settings and signals."""

import signal

import torch

from seq2seq.runtime import SignalFlag, physical_cores, set_threads


def test_threads_default_to_physical_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(0) == physical_cores() == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_signal_flag_catches_repeats_says_so_and_restores_handlers(capfd):
    before = signal.getsignal(signal.SIGINT)
    with SignalFlag() as stopper:
        signal.raise_signal(signal.SIGINT)
        assert stopper.raised and capfd.readouterr().err == ""  # the first is silent
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    err = capfd.readouterr().err
    assert "SIGTERM again: finishing the step and saving last.pt" in err
    assert "SIGINT again" in err
    assert signal.getsignal(signal.SIGINT) is before
