"""The papers' protocol end to end: `download` builds the tokenized files, `evaluate` and
`compare --protocol multi30k-tok` score against them, and bad input is one line."""

import gzip
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from seq2seq.corpora import multi30k
from seq2seq.corpora.multi30k import (
    LANGS,
    SPLITS,
    TOK_SPLITS,
    build_tokenized,
    download_multi30k,
    multi30k_paths,
    tokenized_path,
)
from seq2seq.metrics import score
from seq2seq.moses import moses_lines
from tests.conftest import train_tiny
from tests.integration.test_bad_input import assert_one_line_error, cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sacremoses") is None,
                                reason="the moses extra (sacremoses) is not installed")


def fake_lines(split: str, lang: str) -> list[str]:
    """Lines with what the Moses steps change: case, an apostrophe, brackets, quotes."""
    return [f"A {split} {lang} dog's (red) hat, \u201equoted\u201c {i}." for i in range(3)]


@pytest.fixture(scope="module")
def fake_mirror(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A mirror folder of the twelve .gz files, and their checksums."""
    folder = tmp_path_factory.mktemp("protocol") / "mirror"
    folder.mkdir()
    sums = {}
    for split in SPLITS:
        for lang in LANGS:
            data = gzip.compress("".join(line + "\n" for line in fake_lines(split, lang))
                                 .encode("utf-8"), mtime=0)
            (folder / f"{split}.{lang}.gz").write_bytes(data)
            sums[f"{split}.{lang}.gz"] = hashlib.sha256(data).hexdigest()
    return folder, sums


@pytest.fixture
def unpacked(fake_mirror, tmp_path) -> Path:
    folder, sums = fake_mirror
    download_multi30k(tmp_path / "m", mirror=folder, progress=False, checksums=sums)
    return tmp_path / "m"


def test_tokenized_files_are_the_pipeline_of_the_raw_ones(unpacked: Path):
    paths = build_tokenized(unpacked, progress=False)
    assert paths == [tokenized_path(unpacked, s, lang) for s in TOK_SPLITS for lang in LANGS]
    assert paths[0] == unpacked / "tok" / "val.lc.norm.tok.de"
    for split in TOK_SPLITS:
        for lang in LANGS:
            raw = multi30k_paths(unpacked, split, lang).read_text(encoding="utf-8")
            expected = "".join(line + "\n" for line in moses_lines(raw.splitlines(), lang))
            assert tokenized_path(unpacked, split, lang).read_text(encoding="utf-8") == expected
    assert "a val en dog &apos;s ( red ) hat , &quot; quoted &quot; 0 ." in paths[1].read_text()


def test_a_rerun_keeps_good_tokenized_files_and_rewrites_an_edited_one(unpacked: Path):
    paths = build_tokenized(unpacked, progress=False)
    good = paths[0].read_bytes()
    paths[0].write_bytes(good.replace(b"dog", b"cat"))
    before = {p: p.stat().st_mtime_ns for p in paths[1:]}
    build_tokenized(unpacked, progress=False)
    assert paths[0].read_bytes() == good
    assert {p: p.stat().st_mtime_ns for p in paths[1:]} == before
    assert not [p for p in (unpacked / "tok").iterdir() if p.name.startswith(".")]


def test_download_command_builds_or_skips_the_tokenized_files(fake_mirror, tmp_path, capfd,
                                                              monkeypatch):
    folder, sums = fake_mirror
    monkeypatch.setattr(multi30k, "SHA256", sums)
    done = cli(capfd, monkeypatch, "download", "multi30k", "--dir", tmp_path / "a", "--mirror",
               folder)
    assert done.code == 0 and f"8 tokenized files ready in {tmp_path / 'a' / 'tok'}" in done.err
    monkeypatch.setattr("seq2seq.moses.sacremoses_version", lambda: None)
    skipped = cli(capfd, monkeypatch, "download", "multi30k", "--dir", tmp_path / "b",
                  "--mirror", folder)
    assert skipped.code == 0 and "12 files ready" in skipped.err
    assert "tokenized files skipped: sacremoses is not installed (pip install " in skipped.err
    assert not (tmp_path / "b" / "tok").exists()


@pytest.fixture
def scored(unpacked: Path, tmp_path: Path) -> dict[str, Path]:
    """test_2016_flickr.en with its tokenized reference, and three hypothesis files."""
    build_tokenized(unpacked, progress=False)
    ref = multi30k_paths(unpacked, "test_2016_flickr", "en")
    lines = ref.read_text().splitlines()
    files = {"ref": ref, "tok": tokenized_path(unpacked, "test_2016_flickr", "en"),
             "same": tmp_path / "same.txt", "lower": tmp_path / "lower.txt",
             "short": tmp_path / "short.txt"}
    files["same"].write_text(ref.read_text())
    files["lower"].write_text("".join(line.lower() + "\n" for line in lines))
    files["short"].write_text(lines[0] + "\n")
    return files


def test_evaluate_hyp_reports_the_three_protocols(scored, capfd, monkeypatch):
    args = ["evaluate", "--hyp", scored["lower"], "--ref", scored["ref"], "--protocol",
            "multi30k-tok"]
    report = json.loads(cli(capfd, monkeypatch, *args, "--json").out)
    rows = report["protocols"]
    assert list(rows) == ["sacrebleu-cased", "sacrebleu-lowercased", "multi30k-tok"]
    assert rows["sacrebleu-cased"]["bleu"] < 100 == rows["sacrebleu-lowercased"]["bleu"]
    assert rows["multi30k-tok"]["bleu"] == 100
    assert "case:mixed|eff:no|tok:13a|smooth:exp" in rows["sacrebleu-cased"]["bleu_signature"]
    assert "case:lc|eff:no|tok:none|smooth:none" in rows["multi30k-tok"]["bleu_signature"]
    assert rows["multi30k-tok"]["pipeline"].startswith("lowercase, normalize-punctuation -l en")
    assert report["protocol"] == "multi30k-tok" and report["files"]["tok_ref"] == str(
        scored["tok"])
    text = cli(capfd, monkeypatch, *args).out.splitlines()
    at = text.index("BLEU by protocol:")
    assert [line.split()[:2] for line in text[at + 1:at + 4]] == [
        ["sacreBLEU", "cased"], ["sacreBLEU", "lowercased"], ["papers'", "(multi30k-tok)"]]
    assert text[at + 3].split()[2] == "100.00" and str(scored["tok"]) in text[at + 4]


def test_evaluate_a_tiny_model_scores_its_tokenized_output(tmp_path, capfd, monkeypatch):
    ckpt, data = train_tiny(tmp_path)
    refs = (data / "test.tgt").read_text().splitlines()
    (data / "tok").mkdir()
    (data / "tok/test.lc.norm.tok.tgt").write_text("".join(
        line + "\n" for line in moses_lines(refs, "en")))
    out = tmp_path / "hyp.txt"
    result = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", data / "test.src", "--ref",
                 data / "test.tgt", "--protocol", "multi30k-tok", "--lang", "en", "-o", out,
                 "--beam-size", "1", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)["protocols"]
    hyps = out.read_text().splitlines()
    expected = score(moses_lines(hyps, "en"), moses_lines(refs, "en"), lowercase=True,
                     metrics=("bleu",), tokenize="none", smooth="none")
    assert rows["multi30k-tok"]["bleu"] == round(expected.bleu, 2)
    assert rows["sacrebleu-cased"]["bleu"] == round(score(hyps, refs, metrics=("bleu",)).bleu, 2)


def test_compare_scores_the_papers_text(scored, capfd, monkeypatch):
    result = cli(capfd, monkeypatch, "compare", "--ref", scored["ref"], scored["lower"],
                 scored["same"], "--protocol", "multi30k-tok", "--n-samples", "20", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["tok_ref"] == str(scored["tok"]) and report["protocol"] == "multi30k-tok"
    lower, same = report["systems"]
    assert same["identical_to_baseline"]  # the two differ only in case, which is gone
    assert lower["scores"]["bleu"]["score"] == 100
    assert "tok:none|smooth:none" in report["signatures"]["bootstrap"]["bleu"]


def test_protocol_bad_input_is_one_line(scored, tmp_path, capfd, monkeypatch):
    hyp, ref = scored["same"], scored["ref"]
    lonely = tmp_path / "lonely.en"
    lonely.write_text(ref.read_text())
    odd = tmp_path / "odd.xx"
    odd.write_text(ref.read_text())
    cases = [
        (["--ref", ref, "--protocol", "papers"], ["unknown protocol 'papers'; known: "]),
        (["--ref", lonely, "--protocol", "multi30k-tok"],
         [f"no tokenized reference for {lonely}", "download multi30k", "--tok-ref"]),
        (["--ref", odd, "--tok-ref", scored["tok"], "--protocol", "multi30k-tok", "--lang",
          "xx"], ["handles en, de, fr, cs", "not 'xx' (--lang)"]),
        (["--ref", ref, "--tok-ref", odd, "--protocol", "multi30k-tok"],
         [f"not 'xx' (the suffix of {odd}); give --lang"]),
        (["--ref", ref, "--tok-ref", scored["short"], "--protocol", "multi30k-tok", "--lang",
          "en"], [f"{scored['short']} has 1 lines but {ref} has 3"]),
        (["--ref", ref, "--lang", "en"], ["--tok-ref and --lang belong to --protocol "]),
    ]
    for args, fragments in cases:
        assert_one_line_error(cli(capfd, monkeypatch, "evaluate", "--hyp", hyp, *args),
                              *fragments)
    assert_one_line_error(cli(capfd, monkeypatch, "compare", "--ref", ref, hyp, hyp,
                              "--protocol", "papers"), "unknown protocol 'papers'")
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses now fails
    assert_one_line_error(cli(capfd, monkeypatch, "evaluate", "--hyp", hyp, "--ref", ref,
                              "--protocol", "multi30k-tok"), "pip install 'seq2seq[moses]'")


def test_reference_val_files_tokenize_line_for_line(mirror: Path, tmp_path: Path):
    dest = tmp_path / "multi30k"
    download_multi30k(dest, mirror=mirror, progress=False)
    paths = build_tokenized(dest, splits=("val",), progress=False)
    for path, lang in zip(paths, LANGS, strict=True):
        raw = multi30k_paths(dest, "val", lang).read_text(encoding="utf-8")
        assert path.read_text(encoding="utf-8").count("\n") == raw.count("\n") == 1014
    # lines 1 to 3 of the release's own data/task1/tok/val.lc.norm.tok.en
    assert tokenized_path(dest, "val", "en").read_text().splitlines()[:3] == [
        "a group of men are loading cotton onto a truck",
        "a man sleeping in a green room on a couch .",
        "a boy wearing headphones sits on a woman &apos;s shoulders ."]
