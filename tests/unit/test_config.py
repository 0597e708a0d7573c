"""Config loading: defaults, validation, --set overrides, messages that name key and file."""

from pathlib import Path

import pytest

from seq2seq.config import Config, dump_config, from_dict, load_config, parse_duration
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
