"""Config loading: defaults, validation, --set overrides, messages that name key and file."""

import dataclasses
import math
import os
import re
from pathlib import Path

import pytest

from seq2seq.config import (
    Config,
    dump_config,
    estimated_parameters,
    from_dict,
    load_config,
    parse_duration,
    read_yaml,
)
from seq2seq.errors import Seq2SeqError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"data": {"train": "a", "dev": "b"}, "train": {"max_steps": 5}}


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_every_bundled_config_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert isinstance(load_config(path), Config)


def test_toy_config_lists_every_key():
    # A complete example; each key's description lives once, in docs/config.md.
    text = (ROOT / "configs/toy.yaml").read_text()
    config = load_config(ROOT / "configs/toy.yaml")
    for section, keys in config.to_dict().items():
        assert f"\n{section}:" in "\n" + text
        for key in keys:
            assert any(ln.strip().startswith(f"{key}:") for ln in text.splitlines()), (
                f"{section}.{key} is not listed in configs/toy.yaml")


def test_unknown_key_names_file_key_and_nearest(tmp_path):
    path = write(tmp_path, "data: {train: a, dev: b}\nmodel:\n  d_modle: 64\n")
    with pytest.raises(Seq2SeqError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "d_modle" in message and "did you mean 'd_model'" in message


def test_unknown_section(tmp_path):
    with pytest.raises(Seq2SeqError, match="unknown key 'modle'.*'model'"):
        load_config(write(tmp_path, "modle: {}\n"))


def test_wrong_type_names_the_key(tmp_path):
    path = write(tmp_path, "data: {train: a, dev: b}\ntrain: {max_steps: many}\n")
    with pytest.raises(Seq2SeqError, match=r"train\.max_steps: expected int, got str"):
        load_config(path)


@pytest.mark.parametrize("override, pattern", [
    ("train.lr=-0.1", r"train\.lr must be > 0"),
    ("decode.beam_size=0", r"decode\.beam_size must be >= 1"),
    ("model.d_model=30", r"divisible by model\.n_heads"),
    ("model.attention=bogus", "not one of scaled_dot"),
    ("train.max_time=soon", "cannot read 'soon'"),
    ("train.device=tpu", "auto, cpu, cuda"),
    ("train.flag=true", r"unknown key 'flag'"),
    ("nodot=1", "section.key=value"),
])
def test_out_of_range_and_bad_overrides(override, pattern):
    with pytest.raises(Seq2SeqError, match=pattern):
        load_config(ROOT / "configs/toy.yaml", [override])


def test_overrides_are_type_checked_and_applied():
    config = load_config(ROOT / "configs/toy.yaml", ["train.lr=0.01", "model.norm=post",
                                                    "train.betas=[0.8, 0.9]"])
    assert config.train.lr == 0.01 and config.model.norm == "post"
    assert config.train.betas == (0.8, 0.9)
    with pytest.raises(Seq2SeqError, match="expected bool"):
        load_config(ROOT / "configs/toy.yaml", ["model.tie_embeddings=maybe"])


def test_invalid_yaml_reports_the_line(tmp_path):
    with pytest.raises(Seq2SeqError, match="invalid YAML at line 4"):
        load_config(write(tmp_path, "data:\n  train: a\n  dev: [b\nmodel: {}\n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(Seq2SeqError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_a_stopping_rule_is_required():
    with pytest.raises(Seq2SeqError, match="max_steps, train.max_epochs, train.max_time"):
        from_dict({"data": {"train": "a", "dev": "b"}})


def test_dump_then_load_round_trips(tmp_path):
    config = from_dict(BASE)
    dump_config(config, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == config


@pytest.mark.parametrize("text, seconds", [("", 0), ("90s", 90), ("60m", 3600),
                                           ("1h30m", 5400), ("120", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds



# ---- issue 21: every value in range, one line for every bad config --------------------------

NUMERIC = [(s.name, f.name, f.type) for s in dataclasses.fields(Config)
           for f in dataclasses.fields(s.type) if f.type in (int, float, tuple[float, float])]


def with_key(section, key, value):
    raw = {name: dict(values) for name, values in BASE.items()}
    raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize("text", ["data: [1, 2]\n", "data: 5\n", "model: text\n",
                                  "train: [max_steps: 5]\n", "[data, model]\n", "7\n"])
def test_sections_that_are_not_mappings(tmp_path, text):
    with pytest.raises(Seq2SeqError, match="mapping"):
        load_config(write(tmp_path, text), ["train.max_steps=5"])
    with pytest.raises(Seq2SeqError, match="mapping"):  # an override does not hide it
        load_config(write(tmp_path, text.replace("5", "[]")), ["data.train=a", "model.d_ff=8",
                                                               "train.max_steps=5"])


@pytest.mark.parametrize("section, key, kind", NUMERIC)
def test_every_numeric_key_refuses_negative_non_finite_and_huge(section, key, kind):
    bad = [-1, 10**30] if kind is int else [-1.0, math.nan, math.inf, -math.inf, 1e30]
    for value in bad:
        value = [value, 0.9] if kind not in (int, float) else value
        with pytest.raises(Seq2SeqError, match=rf"{section}\.{key} must be") as err:
            from_dict(with_key(section, key, value))
        assert "\n" not in str(err.value)
        if value == 10**30:  # the message says the bound
            assert re.search(r"<=? \d", str(err.value)), err.value


@pytest.mark.parametrize("key, value, pattern", [
    ("betas", [0.9, 1.0], r"betas must be >= 0 and < 1"),
    ("betas", [-0.1, 0.9], r"betas must be >= 0"),
    ("adam_eps", 0, r"adam_eps must be > 0"),
    ("weight_decay", -1e-4, r"weight_decay must be >= 0"),
    ("patience", -1, r"patience must be >= 0"),
    ("eval_max_sentences", -1, r"eval_max_sentences must be >= 0"),
    ("clip_norm", math.nan, r"clip_norm must be a finite number"),
    ("lr", ".inf", r"lr must be a finite number"),
    ("label_smoothing", ".nan", r"label_smoothing must be a finite number"),
])
def test_optimizer_and_stopping_values_in_range(key, value, pattern):
    with pytest.raises(Seq2SeqError, match=pattern):
        load_config(ROOT / "configs/toy.yaml", [f"train.{key}={value}"])


def test_a_model_with_absurdly_many_parameters_is_refused():
    raw = with_key("model", "d_model", 65536)
    raw["model"].update(d_ff=262144, n_heads=8)
    with pytest.raises(Seq2SeqError, match=r"about 3\.\de\+11 parameters, over the limit"):
        from_dict(raw)
    raw = with_key("tokenizer", "vocab_size", 1_000_000)
    raw["model"] = {"d_model": 16384, "n_heads": 8, "tie_embeddings": False}
    with pytest.raises(Seq2SeqError, match="parameters"):
        from_dict(raw)
    small = from_dict(BASE)
    assert 10**6 < estimated_parameters(small) < 10**8


@pytest.mark.parametrize("limits", [{"max_steps": 0, "max_time": "0s"},
                                    {"max_steps": 0, "max_time": "0"},
                                    {"max_steps": 0, "max_epochs": 0, "max_time": "0h0m"}])
def test_a_zero_limit_is_no_limit(limits):
    assert parse_duration(limits["max_time"]) == 0
    with pytest.raises(Seq2SeqError, match="set at least one of"):
        from_dict({"data": {"train": "a", "dev": "b"}, "train": limits})
    with pytest.raises(Seq2SeqError, match="max_time.*exceeds a year"):
        from_dict(with_key("train", "max_time", "9000h"))


@pytest.mark.parametrize("run_dir", ["", "   ", "\t"])
def test_an_empty_run_dir_is_refused(run_dir):
    with pytest.raises(Seq2SeqError, match="train.run_dir must name a directory"):
        from_dict(with_key("train", "run_dir", run_dir))


@pytest.mark.parametrize("text, key, lines", [
    ("data: {train: a, dev: b}\nmodel:\n  d_model: 64\n  d_model: 32\n", "d_model", (4, 3)),
    ("train: {max_steps: 5}\ndata: {train: a, dev: b}\ntrain: {max_steps: 7}\n", "train", (3, 1)),
    ("data: {train: a, dev: b, train: c}\n", "train", (1, 1)),
])
def test_duplicate_keys_name_the_key_and_both_lines(tmp_path, text, key, lines):
    with pytest.raises(Seq2SeqError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert f"at line {lines[0]}," in message and f"'{key}' given twice (also at line {lines[1]})"\
        in message, message


def test_yaml_merge_keys_may_override():
    text = "base: &b {d_model: 64, n_heads: 4}\n"
    raw = read_yaml_text(text + "model: {<<: *b, d_model: 32}\n")
    assert raw["model"] == {"d_model": 32, "n_heads": 4}


def read_yaml_text(text):
    from seq2seq.yaml_file import parse_yaml
    return parse_yaml(text)


def test_numbers_strings_and_bools_are_told_apart(tmp_path):
    config = load_config(write(tmp_path, "data: {train: a, dev: b}\n"
                                         "train: {max_steps: 5, lr: 1e-3, betas: [9e-1, 0.98]}\n"))
    assert config.train.lr == 0.001 and config.train.betas == (0.9, 0.98)
    assert load_config(ROOT / "configs/toy.yaml", ["train.lr=5e-4"]).train.lr == 5e-4
    with pytest.raises(Seq2SeqError, match=r"train\.lr: expected float, got str 'fast'.*1\.0e-3"):
        from_dict(with_key("train", "lr", "fast"))
    for section, key, value in [("train", "lr", True), ("model", "d_model", False),
                                ("tokenizer", "vocab_size", "1e30"), ("model", "d_model", 64.0),
                                ("model", "tie_embeddings", 1), ("tokenizer", "joint", "yes"),
                                ("model", "norm", True), ("train", "max_steps", None)]:
        with pytest.raises(Seq2SeqError, match=rf"{section}\.{key}: (expected|True)"):
            from_dict(with_key(section, key, value))


def test_a_config_path_that_is_not_a_small_regular_yaml_file(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    cases = [(tmp_path, "is a directory"), (fifo, "not a regular file"),
             (big, "a config is a small YAML file"), (Path("a\0b.yaml"), "cannot read config"),
             (tmp_path / "deep.yaml", "nest"), (tmp_path / "long.yaml", "digits")]
    (tmp_path / "deep.yaml").write_text("[" * 300_000)  # PyYAML's own scanner is quadratic
    (tmp_path / "long.yaml").write_text("x: " + "1" * 5000)
    for path, pattern in cases:
        with pytest.raises(Seq2SeqError, match=pattern):
            read_yaml(path)
    (tmp_path / "bytes.yaml").write_bytes(b"data: \xff\n")
    with pytest.raises(Seq2SeqError, match="not UTF-8"):
        read_yaml(tmp_path / "bytes.yaml")
