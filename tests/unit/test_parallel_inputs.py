"""Reading parallel corpora: plain, gzip, TSV, several corpora, tables; the seeded sample;
one-line errors naming the file and line; the data.train / data.dev schema."""

import gzip
from pathlib import Path

import pytest

from seq2seq.config import CorpusConfig, dump_config, from_dict, load_config
from seq2seq.corpora.lines import read_lines
from seq2seq.corpora.parallel import (
    check_corpora,
    corpus_spec,
    count_lines_hint,
    fingerprint,
    iter_pairs,
    read_corpus,
    read_parallel,
    read_training_text,
    sample_pairs,
    training_corpora,
)
from seq2seq.errors import Seq2SeqError

PAIRS = [(f"satz {i} ü", f"sentence {i}") for i in range(30)]
PAIRS[4] = ("", "no source")  # empty sides travel in iter_pairs; readers drop them
PAIRS[9] = ("no target", "  ")


def write_side(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_plain(folder: Path, name: str, pairs, src_gz=False, tgt_gz=False) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    write_side(folder / f"{name}.de{'.gz' if src_gz else ''}", [s for s, _ in pairs], src_gz)
    write_side(folder / f"{name}.en{'.gz' if tgt_gz else ''}", [t for _, t in pairs], tgt_gz)
    return str(folder / name)


def write_tsv(path: Path, pairs, compress=False) -> str:
    return str(write_side(path, [f"{s}\t{t}" for s, t in pairs], compress))


def config(train, dev="dev", **data):
    return from_dict({"data": {"train": train, "dev": dev, "src": "de", "tgt": "en", **data},
                      "train": {"max_steps": 5}})


def pairs_of(train) -> list[tuple[str, str]]:
    return [p for spec in training_corpora(config(train)) for p in iter_pairs(spec)]


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(Seq2SeqError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---------------------------------------------------------------- the same pairs, every format


def test_gzip_tsv_and_lists_give_the_pairs_of_the_plain_files(tmp_path: Path) -> None:
    plain = write_plain(tmp_path / "plain", "train", PAIRS)
    assert pairs_of(plain) == PAIRS
    assert pairs_of(write_plain(tmp_path / "gz", "train", PAIRS, True, True)) == PAIRS
    assert pairs_of(write_plain(tmp_path / "mixed", "train", PAIRS, tgt_gz=True)) == PAIRS
    assert pairs_of({"tsv": write_tsv(tmp_path / "t.tsv", PAIRS)}) == PAIRS
    assert pairs_of([{"tsv": write_tsv(tmp_path / "t.tsv.gz", PAIRS, True)}]) == PAIRS
    files = {"src_file": f"{plain}.de", "tgt_file": f"{plain}.en"}
    assert pairs_of([files]) == PAIRS
    first = write_plain(tmp_path / "a", "part", PAIRS[:12], src_gz=True)
    second = write_tsv(tmp_path / "b.tsv.gz", PAIRS[12:], True)
    mixed = [first, {"tsv": second, "weight": 0.5}]
    assert pairs_of(mixed) == PAIRS
    specs = training_corpora(config(mixed))
    assert [(s.kind, s.weight, s.key) for s in specs] == [
        ("plain", 1.0, "data.train[0]"), ("tsv", 0.5, "data.train[1]")]
    text = read_training_text(config(mixed))
    nonempty = [p for p in PAIRS if p[0].strip() and p[1].strip()]
    assert list(zip(text.src, text.tgt, strict=True)) == nonempty and text.dropped_empty == 2


def test_line_endings_and_a_blank_tsv_line(tmp_path: Path) -> None:
    (tmp_path / "c.tsv").write_bytes(b"\xef\xbb\xbfa\tb\r\n\nc\t\xe2\x80\xa8d\n")
    assert pairs_of({"tsv": str(tmp_path / "c.tsv")}) == [("a", "b"), ("", ""), ("c", "\u2028d")]
    (tmp_path / "x.de").write_bytes(b"a\r\nb")  # CRLF, and no final newline
    (tmp_path / "x.en").write_bytes(gzip.compress(b"A\nB\n"))  # .gz content under any name
    assert read_parallel(tmp_path / "x.de", tmp_path / "x.en").src == ["a", "b"]
    assert read_lines(tmp_path / "x.en") == ["A", "B"]  # translate -i and evaluate read .gz too


def test_a_plain_file_is_preferred_to_its_gz(tmp_path: Path) -> None:
    prefix = write_plain(tmp_path, "t", PAIRS[:3])
    write_plain(tmp_path, "t", PAIRS[3:6], src_gz=True, tgt_gz=True)
    assert pairs_of(prefix) == PAIRS[:3]


def test_dev_and_test_take_one_corpus(tmp_path: Path) -> None:
    dev = write_tsv(tmp_path / "dev.tsv", PAIRS[:5])
    cfg = config("t", dev={"tsv": dev}, test=write_plain(tmp_path, "test", PAIRS[5:8]))
    assert read_corpus(corpus_spec(cfg, "data.dev")).src == [s for s, _ in PAIRS[:4]]
    assert corpus_spec(cfg, "data.test").kind == "plain"
    one_line_error(lambda: corpus_spec(config("t"), "data.test"), "data.test is not set")


def test_evaluate_takes_data_test_files_plain_or_gz_and_refuses_a_tsv(tmp_path, monkeypatch):
    from seq2seq import evaluate

    prefix = write_plain(tmp_path, "test", PAIRS[:3], tgt_gz=True)
    for test, expected in ((prefix, (Path(f"{prefix}.de"), Path(f"{prefix}.en.gz"))),
                           ({"tsv": write_tsv(tmp_path / "t.tsv", PAIRS)}, None)):
        monkeypatch.setattr(evaluate, "load_checkpoint", lambda path: {})
        monkeypatch.setattr(evaluate, "checkpoint_config", lambda state, name, t=test:
                            config("a", test=t))
        if expected:
            assert evaluate.default_test_files(tmp_path / "c.pt") == expected
        else:
            one_line_error(lambda: evaluate.default_test_files(tmp_path / "c.pt"),
                           "data.test is a tsv corpus", "give --src and --ref")


# ---------------------------------------------------------------- the sample


def test_the_sample_is_seeded_aligned_and_uniform(tmp_path: Path) -> None:
    pairs = [(f"s{i}", f"t{i}") for i in range(200)] + [("", "x")]
    specs = training_corpora(config([write_plain(tmp_path / "a", "a", pairs[:80]),
                                     {"tsv": write_tsv(tmp_path / "b.tsv", pairs[80:])}]))
    src, tgt = sample_pairs(specs, 50, seed=1)
    assert (src, tgt) == sample_pairs(specs, 50, seed=1)
    assert src != sample_pairs(specs, 50, seed=2)[0]
    assert len(src) == 50 and len(set(src)) == 50
    assert all(t == "t" + s[1:] for s, t in zip(src, tgt, strict=True))  # still aligned
    assert sorted(src, key=lambda s: int(s[1:])) == src  # in corpus order
    everything = sample_pairs(specs, 1000, seed=3)
    assert everything == ([s for s, _ in pairs[:200]], [t for _, t in pairs[:200]])
    # Every pair equally likely: over many seeds each is drawn about n / N of the time.
    counts = dict.fromkeys(range(200), 0)
    for seed in range(400):
        for s in sample_pairs(specs, 20, seed)[0]:
            counts[int(s[1:])] += 1
    shares = [c / 400 for c in counts.values()]  # each about 20 / 200
    assert 0.04 < min(shares) and max(shares) < 0.17


# ---------------------------------------------------------------- bad input, one line each


def test_unequal_line_counts_name_where_a_file_ends(tmp_path: Path) -> None:
    write_side(tmp_path / "train.de", ["a", "b", "c"])
    write_side(tmp_path / "train.en.gz", ["x", "y"], compress=True)
    one_line_error(lambda: pairs_of(str(tmp_path / "train")),
                   "train.en.gz ends at line 2 but", "train.de goes on: line 3 is 'c'",
                   "train.de has 3 lines but", "train.en.gz has 2)")
    write_side(tmp_path / "short.de", [])
    write_side(tmp_path / "short.en", ["x"])
    one_line_error(lambda: pairs_of(str(tmp_path / "short")),
                   "short.de is empty but", "short.en goes on: line 1")
    write_side(tmp_path / "one.de", ["a"])
    write_side(tmp_path / "one.en", ["x", "y"])  # the source ends exactly where zip would
    one_line_error(lambda: read_parallel(tmp_path / "one.de", tmp_path / "one.en"),
                   "one.de ends at line 1 but", "line 2 is 'y'")


@pytest.mark.parametrize("line, tabs", [("no tab here", 0), ("a\tb\tc", 2)])
def test_a_tsv_line_needs_exactly_one_tab(tmp_path: Path, line: str, tabs: int) -> None:
    path = write_tsv(tmp_path / "c.tsv.gz", PAIRS[:2], compress=True)
    write_side(Path(path), ["a\tb", "c\td", line], compress=True)
    one_line_error(lambda: pairs_of({"tsv": path}), f"c.tsv.gz, line 3: {tabs} tabs")


def test_encoding_problems_name_file_and_line(tmp_path: Path) -> None:
    data = b"gut\nsehr gut\n" + "Grüße\n".encode("latin1")
    (tmp_path / "l.de.gz").write_bytes(gzip.compress(data))
    write_side(tmp_path / "l.en", ["a", "b", "c"])
    one_line_error(lambda: pairs_of(str(tmp_path / "l")),
                   "l.de.gz, line 3: invalid UTF-8 (byte 0xfc)", "iconv")
    (tmp_path / "u.tsv").write_bytes("a\tb\nc\td\n".encode("utf-16"))
    one_line_error(lambda: pairs_of({"tsv": str(tmp_path / "u.tsv")}), "u.tsv: the text is UTF-16")
    whole = gzip.compress(b"".join(b"line %d\tzeile %d\n" % (i, i) for i in range(5000)))
    (tmp_path / "cut.tsv.gz").write_bytes(whole[: len(whole) // 2])
    one_line_error(lambda: pairs_of({"tsv": str(tmp_path / "cut.tsv.gz")}),
                   "cut.tsv.gz, after line", "truncated or corrupt")


def test_a_corpus_without_pairs_is_an_error(tmp_path: Path) -> None:
    empty = write_plain(tmp_path, "e", [("", "x"), ("y", " ")])
    one_line_error(lambda: read_training_text(config(empty)),
                   f"no sentence pairs in {empty}.de and {empty}.en", "data.train: 2 pairs")
    fine = write_plain(tmp_path, "f", PAIRS[:3])
    one_line_error(lambda: read_training_text(config([fine, empty])), "data.train[1]: 2 pairs")


def test_a_missing_file_names_the_key_and_the_paths_tried(tmp_path: Path) -> None:
    fine = write_plain(tmp_path, "f", PAIRS[:3])
    one_line_error(lambda: check_corpora(config([fine, str(tmp_path / "nope")]), ["train"]),
                   f"file not found: {tmp_path}/nope.de or {tmp_path}/nope.de.gz",
                   "named by data.train[1])")
    one_line_error(lambda: training_corpora(config([{"tsv": "gone.tsv.gz"}])),
                   "file not found: gone.tsv.gz (named by data.train[0].tsv", "relative to")
    one_line_error(lambda: check_corpora(config(fine, dev=str(tmp_path)), ["train", "dev"]),
                   "named by data.dev")
    one_line_error(lambda: training_corpora(config({"src_file": f"{fine}.de",
                                                    "tgt_file": "x.en"})),
                   "x.en or x.en.gz (named by data.train.tgt_file")


# ---------------------------------------------------------------- the schema


def test_corpus_lists_load_round_trip_and_keep_old_configs(tmp_path: Path) -> None:
    old = config("data/toy/train")
    assert old.data.train == "data/toy/train" and old.to_dict()["data"]["train"] == "data/toy/train"
    mixed = config(["a", {"prefix": "b", "weight": 2}, {"tsv": "c.tsv.gz", "weight": "0.5"},
                    {"src_file": "x.de", "tgt_file": "y.en"}], dev={"tsv": "d.tsv"})
    assert mixed.data.train[1] == CorpusConfig(prefix="b", weight=2.0)
    assert mixed.data.train[2].weight == 0.5 and mixed.data.dev == CorpusConfig(tsv="d.tsv")
    assert from_dict(mixed.to_dict()) == mixed  # as a checkpoint stores it
    dump_config(mixed, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == mixed
    assert load_config(tmp_path / "c.yaml", ["data.train=[p, q]"]).data.train == ("p", "q")
    assert config({"tsv": "one.tsv"}).data.train == CorpusConfig(tsv="one.tsv")


@pytest.mark.parametrize("train, fragment", [
    ([{"prefix": "a", "weight": 0}], "data.train[0].weight must be > 0"),
    (["a", {"prefix": "b", "weight": -1}], "data.train[1].weight must be > 0"),
    ([{"prefix": "a", "weight": float("inf")}], "data.train[0].weight must be a finite number"),
    ([{"prefix": "a", "weight": "heavy"}], "data.train[0].weight: expected float"),
    ([{"prefx": "a"}], "data.train[0]: unknown key 'prefx'; did you mean 'prefix'?"),
    ([{"prefix": "a", "tsv": "b"}], "data.train[0] sets both prefix and tsv"),
    ([{"weight": 2}], "data.train[0] names no corpus"),
    ([{"src_file": "a"}], "data.train[0].src_file and tgt_file go together"),
    ([{"tsv": "a", "src_column": "de", "tgt_column": "en"}],
     "data.train[0].src_column applies to dataset, parquet and arrow corpora only"),
    ([{"parquet": "a", "src_column": "de"}], "src_column and tgt_column go together"),
    ([{"parquet": "a", "split": "train"}], "data.train[0].split applies to dataset"),
    ([], "data.train must name at least one corpus"),
    (["a", ""], "data.train[1] must name a corpus"),
    ([["a"]], "data.train[0]: expected str or a mapping, got list"),
    ([{"tsv": " a.tsv"}], "data.train[0].tsv must not have surrounding spaces"),
    ("", "data.train must name a corpus"),
])
def test_a_bad_corpus_value_is_one_line_naming_the_key(train, fragment: str) -> None:
    one_line_error(lambda: config(train), fragment)


def test_weights_belong_to_training_corpora() -> None:
    one_line_error(lambda: config("a", dev={"tsv": "d", "weight": 2}),
                   "data.dev.weight applies to data.train corpora only")
    one_line_error(lambda: config("a", dev=""), "data.dev must name a corpus")


# ---------------------------------------------------------------- fingerprints, counts


def test_fingerprint_and_line_counts(tmp_path: Path) -> None:
    prefix = write_plain(tmp_path, "t", PAIRS[:3], tgt_gz=True)
    spec = training_corpora(config(prefix))[0]
    before = fingerprint(spec)
    assert [f["path"] for f in before["files"]] == [f"{prefix}.de", f"{prefix}.en.gz"]
    assert before == fingerprint(spec)
    write_side(Path(f"{prefix}.de"), ["satz 0 ü", "satz 1 ü", "satz 9 ü"])  # same size
    after = fingerprint(spec)
    assert after["files"][0]["size"] == before["files"][0]["size"]
    assert after["files"][0]["sha256"] != before["files"][0]["sha256"]
    assert "sha256" not in fingerprint(spec, content=False)["files"][0]
    assert count_lines_hint(spec) == 3
    gz = training_corpora(config({"tsv": write_tsv(tmp_path / "g.tsv.gz", PAIRS, True)}))[0]
    assert count_lines_hint(gz) is None


# ---------------------------------------------------------------- tables (extra: datasets)


def test_parquet_arrow_and_dataset_round_trips(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="the datasets extra (pyarrow) is not installed")
    import pyarrow.parquet as pq

    rows = [p for p in PAIRS if p[0].strip() and p[1].strip()]
    table = pa.table({"translation": [{"de": s, "en": t} for s, t in rows],
                      "id": list(range(len(rows)))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=7)
    assert pairs_of({"parquet": str(tmp_path / "t.parquet")}) == rows
    columns = pa.table({"quelle": [s for s, _ in rows], "ziel": [t for _, t in rows]})
    with pa.ipc.new_file(str(tmp_path / "f.arrow"), columns.schema) as writer:
        writer.write_table(columns, max_chunksize=5)
    with pa.ipc.new_stream(str(tmp_path / "s.arrow"), table.schema) as writer:
        writer.write_table(table)
    by_columns = {"arrow": str(tmp_path / "f.arrow"), "src_column": "quelle",
                  "tgt_column": "ziel"}
    assert pairs_of(by_columns) == rows
    assert pairs_of({"arrow": str(tmp_path / "s.arrow")}) == rows
    spec = training_corpora(config({"parquet": str(tmp_path / "t.parquet")}))[0]
    assert count_lines_hint(spec) == len(rows)
    one_line_error(lambda: pairs_of({"arrow": str(tmp_path / "f.arrow")}),
                   "no translation column", "its columns: quelle, ziel")
    wrong = config({"parquet": str(tmp_path / "t.parquet")}, src="fr", tgt="en")
    one_line_error(lambda: list(iter_pairs(training_corpora(wrong)[0])),
                   "row 1: the 'translation' mapping has no 'fr' (it has de, en)")


def test_a_saved_dataset_round_trips(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the datasets extra is not installed")
    rows = PAIRS[:6]
    one = datasets.Dataset.from_dict({"de": [s for s, _ in rows], "en": [t for _, t in rows]})
    one.save_to_disk(str(tmp_path / "one"))
    assert pairs_of({"dataset": str(tmp_path / "one")}) == rows  # columns named data.src/tgt
    both = datasets.DatasetDict({"train": one, "validation": one.select(range(2))})
    both.save_to_disk(str(tmp_path / "both"))
    assert pairs_of({"dataset": str(tmp_path / "both"), "split": "validation"}) == rows[:2]
    one_line_error(lambda: pairs_of({"dataset": str(tmp_path / "both")}),
                   "holds the splits train, validation; choose one with data.train.split")
    one_line_error(lambda: training_corpora(config({"dataset": str(tmp_path / "none")})),
                   "folder not found", "named by data.train.dataset")
    spec = training_corpora(config({"dataset": str(tmp_path / "one")}))[0]
    assert spec.files and all(p.is_file() for p in spec.files)
    assert count_lines_hint(spec) == 6


def test_a_missing_extra_is_one_line_saying_how_to_install_it(tmp_path: Path, monkeypatch):
    from seq2seq.corpora import tables

    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(tables.importlib.util, "find_spec", lambda name: None)
    fine = write_plain(tmp_path, "f", PAIRS[:2])
    for entry, package in (({"parquet": str(tmp_path / "t.parquet")}, "pyarrow"),
                           ({"dataset": str(tmp_path)}, "datasets")):
        one_line_error(lambda e=entry: training_corpora(config([fine, e])),
                       f"data.train[1].{next(iter(entry))}: reading a",
                       f"needs the {package} package", "pip install 'seq2seq[datasets]'")


def test_the_tokenizer_follows_the_list_of_training_corpora(tmp_path: Path) -> None:
    from seq2seq.prepare import prepare
    from tests.conftest import write_slice

    data = write_slice(tmp_path, n_train=150, n_dev=4)
    more = write_tsv(tmp_path / "more.tsv", PAIRS)

    def run(train) -> str:
        logs: list[str] = []
        prepare(from_dict({"data": {"train": train, "dev": f"{data}/dev"},
                           "tokenizer": {"vocab_size": 100},
                           "train": {"max_steps": 1, "run_dir": str(tmp_path / "run")}}),
                log=logs.append)
        return " ".join(logs)

    both = [f"{data}/train", {"tsv": more}]
    assert "SentencePiece model" in run(both) and "reusing" in run(both)
    assert f"the training text {more} is no longer in data.train" in run([f"{data}/train"])
    assert "reusing" in run(f"{data}/train")  # a one-item list and its prefix are one corpus
