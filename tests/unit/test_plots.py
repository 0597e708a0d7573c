"""`seq2seq plot`: training curves of several runs from their metrics.jsonl files."""

import json
from pathlib import Path

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.inspection.commands import plot
from seq2seq.inspection.plots import labels, plot_runs, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir: Path, steps: int, seconds_per_step: float, extra: str = "") -> None:
    run_dir.mkdir(parents=True)
    rows = []
    for step in range(10, steps + 1, 10):
        rows.append({"step": step, "elapsed": step * seconds_per_step, "train_loss": 5 / step,
                     "lr": 1e-3, "tokens_per_s": 1000.0, "epoch": 0})
        if step % 50 == 0:
            rows.append({"step": step, "elapsed": step * seconds_per_step, "val_loss": 6 / step,
                         "val_ppl": 2.0, "bleu": step / 10, "chrf": 30.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)


def test_plot_overlays_runs(tmp_path, capsys):
    write_metrics(tmp_path / "base", 200, 0.5)
    write_metrics(tmp_path / "cosine", 150, 0.7, extra='{"step": 160, "ela')  # being written
    assert len(read_metrics(tmp_path / "cosine")) == 15 + 3
    out = tmp_path / "curves.png"
    plot([tmp_path / "base", tmp_path / "cosine"], out)
    assert out.read_bytes().startswith(PNG_MAGIC) and out.stat().st_size > 10_000
    assert "curves of 2 run(s)" in capsys.readouterr().err


def test_plot_labels_runs_by_the_path_that_tells_them_apart():
    assert labels([Path("runs/a/toy"), Path("runs/b/toy")]) == ["a/toy", "b/toy"]
    assert labels([Path("runs/base"), Path("runs/cosine/")]) == ["base", "cosine"]
    assert labels([Path("/x/runs/toy"), Path("/x/runs/toy")]) == ["toy", "toy (2)"]
    assert labels([Path("toy"), Path("old/toy")]) == ["toy", "old/toy"]


def test_plot_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Seq2SeqError, match="empty/metrics.jsonl not found"):
        plot_runs([tmp_path / "empty"], tmp_path / "out.png")
    write_metrics(tmp_path / "bad", 20, 1.0)
    path = tmp_path / "bad/metrics.jsonl"
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(Seq2SeqError, match="line 1"):
        read_metrics(tmp_path / "bad")


def test_plot_refuses_rows_that_are_not_objects_and_skips_values_that_are_not_numbers(
        tmp_path):
    write_metrics(tmp_path / "odd", 20, 1.0)
    path = tmp_path / "odd/metrics.jsonl"
    path.write_text('{"step": null, "elapsed": "soon", "bleu": "high"}\n' + path.read_text())
    plot_runs([tmp_path / "odd"], tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes().startswith(PNG_MAGIC)
    path.write_text("[1, 2]\n" + path.read_text())
    with pytest.raises(Seq2SeqError, match="line 1: not a JSON object"):
        read_metrics(tmp_path / "odd")
