"""`compare` and `evaluate`'s report from the command line: settings, files, BLEU's breakdown,
paired significance tests, and bad input as one line with nothing written."""

import json
from pathlib import Path

import pytest

from tests.conftest import train_tiny, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A two-step tiny model: (best.pt, the toy slice of 40 test lines it was trained on)."""
    return train_tiny(tmp_path_factory.mktemp("compare"))


@pytest.fixture
def systems(tmp_path) -> dict[str, Path]:
    """A reference of 40 toy lines, a copy of it, a shuffled copy, and one line shorter."""
    ref = write_slice(tmp_path, n_train=1, n_dev=40) / "test.tgt"
    lines = ref.read_text().splitlines()
    files = {"ref": ref, "perfect": tmp_path / "perfect.txt", "shuffled": tmp_path / "shuf.txt",
             "short": tmp_path / "short.txt", "empty": tmp_path / "empty.txt"}
    files["perfect"].write_text(ref.read_text())
    files["shuffled"].write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    files["short"].write_text("\n".join(lines[:-1]) + "\n")
    files["empty"].write_text("")
    return files


# ---------------------------------------------------------------- compare


def test_compare_json_holds_scores_intervals_and_p_values(systems, capfd, monkeypatch):
    result = cli(capfd, monkeypatch, "compare", "--ref", systems["ref"], systems["perfect"],
                 systems["shuffled"], "--n-samples", "200", "--metrics", "bleu,chrf,ter",
                 "--method", "both", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["n_samples"] == {"bootstrap": 200, "ar": 200} and report["seed"] == 12345
    baseline, worse = report["systems"]
    assert baseline["name"] == str(systems["perfect"]) and not baseline["checkpoint"]
    assert baseline["lines_differing"] == 0 and worse["lines_differing"] == 40
    assert baseline["scores"]["bleu"] == {"score": 100.0, "mean": 100.0, "ci95": 0.0,
                                          "p_bootstrap": None, "p_ar": None}
    for metric in ("bleu", "chrf", "ter"):
        cell = worse["scores"][metric]
        assert cell["p_bootstrap"] < 0.05 and cell["p_ar"] < 0.05 and cell["ci95"] > 0
    assert "bs:200" in report["signatures"]["bootstrap"]["bleu"]
    assert "ar:200" in report["signatures"]["ar"]["ter"]


def test_compare_of_a_system_against_itself_gives_p_one(systems, capfd, monkeypatch):
    result = cli(capfd, monkeypatch, "compare", "--ref", systems["ref"], systems["ref"],
                 systems["perfect"], "--n-samples", "100", "--method", "both", "--json")
    assert result.code == 0, result.err
    same = json.loads(result.out)["systems"][1]
    assert same["identical_to_baseline"] and same["lines_differing"] == 0
    assert {same["scores"][m][f"p_{t}"] for m in ("bleu", "chrf") for t in ("bootstrap", "ar")
            } == {1.0}


def test_compare_text_is_a_table_with_stars_for_significance(systems, capfd, monkeypatch):
    result = cli(capfd, monkeypatch, "compare", "--ref", systems["ref"], systems["perfect"],
                 systems["shuffled"], systems["perfect"], "--n-samples", "100")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("3 systems, 40 sentences of") and "seed 12345" in lines[0]
    table = lines[2:6]
    assert table[0].split()[:2] == ["system", "BLEU"] and table[1].startswith("baseline: ")
    assert table[2].rstrip().endswith("*") and "(= baseline)" in table[3]
    assert any("BLEU signature (bootstrap): nrefs:1" in line for line in lines)


def test_compare_translates_checkpoints_with_src(trained, capfd, monkeypatch):
    ckpt, data = trained
    result = cli(capfd, monkeypatch, "compare", "--ref", data / "test.tgt", "--src",
                 data / "test.src", data / "test.tgt", ckpt, "--beam-size", "1",
                 "--n-samples", "50", "--json")
    assert result.code == 0, result.err
    reference, model = json.loads(result.out)["systems"]
    assert not reference["checkpoint"] and reference["decoding"] is None
    assert model["checkpoint"] and model["decoding"]["beam_size"] == 1
    assert model["scores"]["bleu"]["score"] < 100


def test_compare_bad_input_is_one_line(trained, systems, capfd, monkeypatch):
    ckpt, _ = trained
    ref, perfect, short = systems["ref"], systems["perfect"], systems["short"]
    cases = [
        ([perfect], ["at least two systems", "got 1"]),
        ([], ["at least two systems", "got 0"]),
        ([perfect, short], [f"{short} has 39 lines but {ref} has 40"]),
        ([perfect, systems["empty"]], [f"the hypothesis file {systems['empty']} is empty"]),
        ([perfect, perfect, "--method", "permutation"], ["unknown method 'permutation'"]),
        ([perfect, perfect, "--metrics", "bleu,bleurt"], ["unknown metric 'bleurt'"]),
        ([perfect, perfect, "--tokenize", "moses"], ["unknown BLEU tokenizer 'moses'"]),
        ([perfect, perfect, "--n-samples", "0"], ["--n-samples must be >= 1"]),
        ([perfect, perfect, "--seed", "0"], ["--seed must be an integer >= 1"]),
        ([perfect, ckpt], [f"{ckpt} is a checkpoint; give --src"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(cli(capfd, monkeypatch, "compare", "--ref", ref, *args),
                              *fragments)
    assert_one_line_error(cli(capfd, monkeypatch, "compare", perfect, perfect), "give --ref")
    assert_one_line_error(cli(capfd, monkeypatch, "compare", "--ref", systems["empty"], perfect,
                              perfect), "the reference file")


# ---------------------------------------------------------------- evaluate


def test_evaluate_json_holds_settings_files_and_breakdown(trained, tmp_path, capfd,
                                                          monkeypatch):
    ckpt, data = trained
    out = tmp_path / "hyp.txt"
    result = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", data / "test.src", "--ref",
                 data / "test.tgt", "--beam-size", "1", "--max-len-ratio", "2",
                 "--metrics", "bleu,chrf,ter", "--tokenize", "intl", "-o", out, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["decoding"].items() >= {"beam_size": 1, "length_penalty": 1.0,
                                          "max_len_ratio": 2.0, "batch_size": 16}.items()
    assert report["files"] == {"checkpoint": str(ckpt), "src": str(data / "test.src"),
                               "ref": str(data / "test.tgt"), "hyp": None, "output": str(out)}
    assert report["metrics"] == ["bleu", "chrf", "ter"] and report["tokenize"] == "intl"
    assert "tok:intl" in report["bleu_signature"] and "ter_signature" in report
    assert set(report["bleu_breakdown"]) == {"precisions", "brevity_penalty", "ratio",
                                             "hyp_len", "ref_len"}
    assert len(report["bleu_breakdown"]["precisions"]) == 4
    assert len(out.read_text().splitlines()) == 40


def test_evaluate_text_shows_the_breakdown(trained, capfd, monkeypatch):
    ckpt, data = trained
    result = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", data / "test.src", "--ref",
                 data / "test.tgt", "--metrics", "ter,bleu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("TER = ") and "BLEU = " in lines[0] and "beam 2" in lines[0]
    assert lines[1].startswith("  BLEU breakdown: ") and "BP = " in lines[1]
    assert lines[2].startswith("  TER signature:") and len(lines) == 4


def test_evaluate_scores_a_file_without_a_checkpoint(systems, capfd, monkeypatch):
    result = cli(capfd, monkeypatch, "evaluate", "--hyp", systems["shuffled"], "--ref",
                 systems["ref"], "--metrics", "chrf", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["decoding"] is None and report["files"]["checkpoint"] is None
    assert set(report) >= {"chrf", "chrf_signature"} and "bleu" not in report
    text = cli(capfd, monkeypatch, "evaluate", "--hyp", systems["perfect"], "--ref",
               systems["ref"])
    assert text.code == 0 and text.out.startswith("BLEU = 100.00   chrF2 = 100.00   (40 ")
    assert "scored from --hyp" in text.out


def test_evaluate_bad_input_is_one_line_and_writes_nothing(trained, systems, tmp_path, capfd,
                                                           monkeypatch):
    ckpt, data = trained
    ref, out = systems["ref"], tmp_path / "out.txt"
    before = ref.read_bytes()
    cases = [
        ([], ["give a checkpoint to translate --src, or --hyp FILE"]),
        (["--hyp", systems["perfect"]], ["give --ref"]),
        (["--hyp", systems["short"], "--ref", ref], [f"{systems['short']} has 39 lines",
                                                    f"{ref} has 40"]),
        (["--hyp", systems["perfect"], "--ref", ref, "-o", ref], ["is also the input"]),
        (["--hyp", systems["perfect"], "--ref", ref, "--metrics", "bleu,meteor"],
         ["unknown metric 'meteor'"]),
        ([ckpt, "--src", data / "test.src", "--ref", data / "test.tgt", "--tokenize", "moses"],
         ["unknown BLEU tokenizer 'moses'"]),
    ]
    for args, fragments in cases:
        extra = [] if "-o" in args else ["-o", out]
        assert_one_line_error(cli(capfd, monkeypatch, "evaluate", *args, *extra), *fragments)
    assert not out.exists() and ref.read_bytes() == before
