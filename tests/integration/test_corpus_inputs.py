"""`seq2seq train` on gzip, TSV and several corpora, and bad corpora through the CLI: one line
naming the file and the line, exit 2, no tokenizer trained on half-read text."""

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli


def corpus_config(tmp_path: Path, train_lines: list[str], dev: str = "") -> Path:
    """The tiny config with data.train replaced by the YAML lines given (under `train:`)."""
    data = write_slice(tmp_path, n_train=120, n_dev=16)
    path = tiny_config_yaml(tmp_path, data, max_steps=2, eval_every=2)
    lines = path.read_text().splitlines()
    at = lines.index(f"  train: {data}/train")
    lines[at:at + 1] = ["  train:", *[f"    {line}" for line in train_lines]]
    if dev:
        lines[lines.index(f"  dev: {data}/dev")] = f"  dev: {dev}"
    path.write_text("\n".join(lines) + "\n")
    return path


def split_slice(data: Path) -> tuple[str, Path]:
    """The slice's training pairs as two corpora: a gzip prefix (60 pairs) and a TSV (60)."""
    src = (data / "train.src").read_text().splitlines()
    tgt = (data / "train.tgt").read_text().splitlines()
    for side, lines in (("src", src), ("tgt", tgt)):
        (data / f"part.{side}.gz").write_bytes(gzip.compress("\n".join(lines[:60]).encode()))
    tsv = data / "rest.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in zip(src[60:], tgt[60:], strict=True)))
    return str(data / "part"), tsv


def test_train_reads_a_gzip_prefix_and_a_tsv_together(tmp_path, capfd, monkeypatch) -> None:
    config = corpus_config(tmp_path, [f"- {tmp_path}/data/part", "- {tsv: PLACEHOLDER, "
                                      "weight: 0.5}"])
    prefix, tsv = split_slice(tmp_path / "data")
    config.write_text(config.read_text().replace("PLACEHOLDER", str(tsv)))
    result = cli(capfd, monkeypatch, "train", config)
    assert result.code == 0, result.err
    assert "data: 120 training pairs" in result.out + result.err
    manifest = json.loads((tmp_path / "run/spm.model.json").read_text())
    assert sorted(manifest["text"]) == sorted([f"{prefix}.src.gz", f"{prefix}.tgt.gz", str(tsv)])


@pytest.mark.parametrize("case", ["tsv tabs", "short side", "missing entry", "weight",
                                  "latin-1 dev"])
def test_bad_corpora_are_one_line_before_any_work(tmp_path, capfd, monkeypatch, case) -> None:
    data = tmp_path / "data"
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\td\ne\tf\tg\n")
    entries, dev, fragments = {
        "tsv tabs": ([f"- {data}/train", f"- tsv: {bad}"], "", ["bad.tsv, line 3: 2 tabs"]),
        "short side": ([f"- {data}/short"], "",
                       ["short.tgt.gz ends at line 2 but", "short.src goes on: line 3"]),
        "missing entry": ([f"- {data}/train", f"- {data}/gone"], "",
                          ["file not found: ", "gone.src or ", "gone.src.gz",
                           "named by data.train[1]"]),
        "weight": ([f"- {data}/train", f"- {{prefix: {data}/train, weight: 0}}"], "",
                   ["data.train[1].weight must be > 0"]),
        "latin-1 dev": ([f"- {data}/train"], f"{{tsv: {tmp_path}/dev.tsv}}",
                        ["dev.tsv, line 2: invalid UTF-8"]),
    }[case]
    config = corpus_config(tmp_path, entries, dev)
    (data / "short.src").write_text("a\nb\nc\n")
    (data / "short.tgt.gz").write_bytes(gzip.compress(b"x\ny\n"))
    (tmp_path / "dev.tsv").write_bytes("gut\tgood\nGrüße\tgreetings\n".encode("latin1"))
    result = cli(capfd, monkeypatch, "train", config)
    assert_one_line_error(result, *fragments)
    assert not list((tmp_path / "run").glob("*.pt"))
    if case != "latin-1 dev":  # the training text is read before the tokenizer is trained
        assert not (tmp_path / "run/spm.model").exists()
