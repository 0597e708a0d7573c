"""Where and how the process runs: device, CPU threads, autocast, RNG state, signals."""

import contextlib
import os
import signal

import torch

from seq2seq.errors import Seq2SeqError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cuda:N' is checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise Seq2SeqError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise Seq2SeqError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Seq2SeqError(f"device {name!r} asked for, but CUDA is not available here; "
                               "use train.device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise Seq2SeqError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads do not help matmuls)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    siblings = _threads_per_core()
    return max(1, available // siblings)


def _threads_per_core() -> int:
    try:
        with open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") as f:
            text = f.read().strip()
    except OSError:
        return 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return max(1, count)


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 = physical cores); returns the number set."""
    n = threads or physical_cores()
    torch.set_num_threads(n)
    return n


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware here: a CUDA GPU with bf16, or a CPU
    with AVX-512 BF16 or AMX. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, may go
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 where `fast_bf16(device)`, else fp32; other values are kept."""
    if precision != "auto":
        return precision
    return "bf16" if fast_bf16(device) else "fp32"


def precision_named(precision: str, device: torch.device) -> str:
    """The precision as a log line names it: 'bf16', or 'auto: bf16' where auto chose."""
    chosen = resolve_precision(precision, device)
    return chosen if precision == chosen else f"{precision}: {chosen}"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass; fp32 is a no-op, auto resolves
    through resolve_precision."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise Seq2SeqError("train.precision=fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class SignalFlag:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step, so a step and a
    save always finish. A repeated signal interrupts nothing either: it says so on stderr.

    Keep the flag installed until the last file is written; outside it a second Ctrl-C
    would stop a save halfway and leave the checkpoint at an older step.
    """

    REPEAT = ("seq2seq: {name} again: finishing the step and saving last.pt first; "
              "wait for it (a SIGKILL now loses the steps since the last checkpoint)\n")

    def __init__(self):
        self.raised, self._old = False, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:  # os.write: a handler may run inside a print, which is not reentrant
            os.write(2, self.REPEAT.format(name=signal.Signals(signum).name).encode())
        self.raised = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def rng_state() -> dict:
    """Every random number generator torch uses here (CPU, and CUDA when present)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
