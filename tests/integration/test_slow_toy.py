"""Slow: the full toy recipe reaches the demo's target with every attention score.

Run with `make test-slow` (about 2.5 minutes per score on 2 cores); `make test` skips it.
"""

import json
import subprocess
import sys

import pytest

from seq2seq.model.attention import SCORES
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("score", SCORES)
def test_toy_recipe_reaches_bleu_90(score, tmp_path):
    run_dir = tmp_path / score
    train = subprocess.run(
        [sys.executable, "-m", "seq2seq", "train", "configs/toy.yaml", "--no-progress",
         "--set", f"model.attention={score}", "--set", f"train.run_dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    evaluate = subprocess.run(
        [sys.executable, "-m", "seq2seq", "evaluate", str(run_dir / "best.pt"), "--beam-size",
         "5", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["bleu"] >= 90
