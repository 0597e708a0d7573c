"""scripts/reproduce_multi30k.sh end to end on the Multi30k mirror, with a tiny model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TINY = ["model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.encoder_layers=1",
        "model.decoder_layers=1", "tokenizer.vocab_size=300", "train.max_steps=2",
        "train.batch_tokens=512", "train.average_best=2", "decode.max_len_ratio=0.1"]


@pytest.mark.slow  # about a minute: SentencePiece on 58k lines, 2 x 1000 test sentences
def test_reproduce_script_trains_evaluates_and_prints_rows(tmp_path: Path, mirror: Path) -> None:
    """A copy of the script in a scratch tree: download from the mirror, train into the
    run_dir an override names (so an earlier run is left alone), print both table rows."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "reproduce_multi30k.sh", tmp_path / "scripts")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    earlier = tmp_path / "runs" / "multi30k_de_en"
    earlier.mkdir(parents=True)
    (earlier / "best.pt").write_bytes(b"an earlier run")
    sets = [a for s in [*TINY, "train.run_dir=runs/longer"] for a in ("--set", s)]
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "reproduce_multi30k.sh"), "de_en",
         "--mirror", str(mirror), *sets],
        capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "BIN": str(Path(sys.executable).parent),
             "PYTHONPATH": str(ROOT)})  # this tree's package, not whichever is installed
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| de->en |")]
    assert "case:mixed" in rows[0] and "case:lc" in rows[1]
    assert "(2 steps)" in rows[0] and "runs/longer/" in rows[0]
    papers = importlib.util.find_spec("sacremoses") is not None  # the papers' row needs it
    assert len(rows) == 2 + papers and (not papers or "tok:none|smooth:none" in rows[2])
    for case in ["cased", "lowercase"] + ["protocols"] * papers:
        assert "bleu" in json.loads((tmp_path / "runs" / "longer" / f"test_{case}.json")
                                    .read_text())
    assert (earlier / "best.pt").read_bytes() == b"an earlier run"
    assert (tmp_path / "data" / "multi30k" / "test_2016_flickr.en").is_file()


@pytest.mark.slow  # about a minute: the above with two seeds trained side by side
def test_reproduce_script_with_two_seeds_scores_their_ensemble(tmp_path: Path,
                                                                mirror: Path) -> None:
    """--seeds 2: runs RUN_s1 and RUN_s2 with their logs beside them, one ensemble row."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "reproduce_multi30k.sh", tmp_path / "scripts")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    sets = [a for s in [*TINY, "train.run_dir=runs/pair"] for a in ("--set", s)]
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "reproduce_multi30k.sh"), "de_en",
         "--mirror", str(mirror), "--seeds", "2", *sets],
        capture_output=True, text=True, timeout=900,
        env={"PATH": "/usr/bin:/bin", "BIN": str(Path(sys.executable).parent),
             "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| de->en |")]
    assert "runs/pair_s1/" in rows[0] and "runs/pair_s2/" in rows[0]
    runs = tmp_path / "runs"
    for seed in (1, 2):
        log = (runs / f"pair_s{seed}.log").read_text()
        assert "1 threads" in log and "stopped: max_steps=2" in log
        assert f"\n  seed: {seed}\n" in (runs / f"pair_s{seed}" / "config.yaml").read_text()
    assert json.loads((runs / "pair_s1" / "test_cased.json").read_text())["bleu"] >= 0


def test_reproduce_script_refuses_a_bad_seed_count() -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_multi30k.sh"), "de_en",
                           "--seeds", "two"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--seeds needs 1-99" in done.stderr
