"""Process settings."""

import torch

from seq2seq.runtime import physical_cores, set_threads


def test_threads_default_to_physical_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(0) == physical_cores() == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
