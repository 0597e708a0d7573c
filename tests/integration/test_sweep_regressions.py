"""Classes the adversarial CLI sweep of issue 21 found, each pinned by one fast test."""

import os
import subprocess
import sys

from tests.conftest import ROOT

LATE_CTRL_C = """
import atexit, os, signal, sys
import torch  # its exit callbacks are registered first
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C while exiting
from seq2seq.cli import main
sys.argv = ["seq2seq", "--help"]
main()
"""


def test_a_ctrl_c_while_the_process_exits_prints_no_traceback():
    done = subprocess.run([sys.executable, "-c", LATE_CTRL_C], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert done.returncode == 0, done.stderr
