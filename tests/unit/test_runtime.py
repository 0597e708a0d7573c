"""Process settings and signals."""

import signal

import torch

from seq2seq.runtime import (
    SignalFlag,
    physical_cores,
    precision_named,
    resolve_precision,
    set_threads,
)


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


def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_in_bf16(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, chosen in ((False, False, "fp32"), (True, False, "bf16"),
                                     (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", cpu) == chosen
        assert precision_named("auto", cpu) == f"auto: {chosen}"
        assert resolve_precision("fp32", cpu) == "fp32"  # only auto is resolved
        assert precision_named("bf16", cpu) == "bf16"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probe
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
