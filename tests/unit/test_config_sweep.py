"""A property sweep over config values: a valid Config or one Seq2SeqError, never a hang.

Configs that validate build their model on the meta device; a few bad values go through the
real CLI and give exit 2 and one line on stderr. A longer sweep:
SEQ2SEQ_SWEEP_SCALE=50 pytest tests/unit/test_config_sweep.py
"""

import dataclasses
import math
import os
import sys
import typing

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from seq2seq.cli import main
from seq2seq.config import MAX_PARAMETERS, Config, estimated_parameters, from_dict, load_config
from seq2seq.errors import Seq2SeqError
from seq2seq.model.build import build_model

KEYS = [(s.name, f.name) for s in dataclasses.fields(Config) for f in dataclasses.fields(s.type)]
BASE = {"data": {"train": "a", "dev": "b"}, "train": {"max_steps": 5}}
SCALE = float(os.environ.get("SEQ2SEQ_SWEEP_SCALE", 1))  # e.g. 50 for a sweep of minutes


def sweep(examples: int) -> settings:
    """Settings for `examples` cases (times SCALE), each allowed half a second."""
    return settings(max_examples=int(examples * SCALE), deadline=500,
                    suppress_health_check=[HealthCheck.too_slow])


EDGES = [0, -1, 1, 2**31, 2**32, 2**63, 2**64, 10**30, -10**30, 10**400, 0.0, -0.0, -1.0,
         1e-300, 5e-324, 1e30, -1e30, math.inf, -math.inf, math.nan]
WORDS = ["", " ", "\t", "0", "-1", "1e-3", "1.0e-3", "1e30", "nan", "inf", ".inf", "-inf",
         "0s", "0h0m", "60m", "9999999999999h", "true", "cuda:99", "a\nb", "\x00", "é" * 80]
VALUES = st.one_of(
    st.sampled_from(EDGES), st.sampled_from(WORDS), st.none(), st.booleans(), st.integers(),
    st.floats(), st.text(max_size=12), st.lists(st.one_of(st.floats(), st.integers()),
                                                max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
OVERRIDE_TEXT = st.one_of(st.sampled_from(WORDS + ["[0.9, 1]", "{a: 1}", "[" * 50, "&a [*a]",
                                                   "!!python/object:os.system x", "1" * 5000]),
                          st.text(max_size=20))


def check(build) -> Config | None:
    """Run build(); it returns a Config or raises one single-line Seq2SeqError."""
    try:
        config = build()
    except Seq2SeqError as error:
        assert "\n" not in str(error) and str(error), repr(str(error))
        return None
    assert isinstance(config, Config)
    return config


@sweep(300)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=4))
def test_any_values_give_a_config_or_one_line(changes):
    raw = {name: dict(values) for name, values in BASE.items()}
    for (section, key), value in changes.items():
        raw.setdefault(section, {})[key] = value
    config = check(lambda: from_dict(raw, source="sweep"))
    if config is not None:  # what validates is a usable config: it round-trips
        assert from_dict(config.to_dict()) == config


@pytest.fixture(scope="module")
def base_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "base.yaml"
    path.write_text("data: {train: a, dev: b}\ntrain: {max_steps: 5}\n")
    return path


@sweep(150)
@given(key=st.sampled_from(KEYS), text=OVERRIDE_TEXT)
def test_any_override_text_gives_a_config_or_one_line(base_yaml, key, text):
    check(lambda: load_config(base_yaml, [f"{key[0]}.{key[1]}={text}"]))


YAML_PIECES = st.sampled_from([
    "data", "model", "train", ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "&a ", "*a",
    "<<", "!!str ", "!!float", "!!binary ", "!!set ", "? ", "'", '"', "#", "1e3", ".nan", "~",
    "train: a", "dev: b", "max_steps: 5", "d_model", "|", "%YAML 1.1", "---", "...", "\t",
    "\x00", "\ufeff", "2001-12-14", "0x1F", "1_000"])


@sweep(150)
@given(st.lists(YAML_PIECES, max_size=30).map("".join) | st.text(max_size=40))
@example("!!float")  # PyYAML's constructor raised IndexError
def test_any_config_text_gives_a_config_or_one_line(base_yaml, text):
    path = base_yaml.with_name("text.yaml")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(lambda: load_config(path, ["data.train=a", "data.dev=b", "train.max_steps=5"]))


@st.composite
def valid_models(draw) -> dict:
    """Model and tokenizer sections that validate unless over the parameter limit."""
    rnn = draw(st.booleans())
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    width = heads * draw(st.sampled_from([1, 2, 3, 16, 64, 512])) * (2 if rnn else 1)
    attention = ["dot", "general", "additive", "none"] if rnn else [
        "scaled_dot", "dot", "cosine", "general", "additive"]
    model = {"arch": "rnn" if rnn else "transformer", "d_model": width, "n_heads": heads,
             "rnn_cell": draw(st.sampled_from(["gru", "lstm"])),
             "attention": draw(st.sampled_from(attention)),
             "d_ff": draw(st.sampled_from([1, 7, 64, 4096])),
             "encoder_layers": draw(st.integers(1, 3)), "decoder_layers": draw(st.integers(1, 3)),
             "dropout": draw(st.floats(0, 0.99)), "norm": draw(st.sampled_from(["pre", "post"])),
             "tie_embeddings": draw(st.booleans()), "share_embeddings": draw(st.booleans()),
             "max_positions": draw(st.sampled_from([8, 513, 65536]))}
    tokenizer = {"vocab_size": draw(st.sampled_from([8, 1000, 1_000_000])),
                 "joint": draw(st.booleans())}
    return {**BASE, "model": model, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def meta_ready():
    """torch loads its meta kernels on first use (seconds), which is no hang of ours."""
    torch.arange(4, device="meta").float().exp()


# A generous deadline: it catches a hang, not a slow shared machine.
@settings(max_examples=int(25 * SCALE), deadline=10_000,
          suppress_health_check=[HealthCheck.too_slow])
@given(raw=valid_models())
def test_configs_that_validate_build_their_model_on_meta(meta_ready, raw):
    config = check(lambda: from_dict(raw))
    if config is None:  # only the parameter limit may refuse these
        unchecked = Config(**{k: cls(**raw.get(k, {})) for k, cls in typing.get_type_hints(
            Config).items()})
        assert estimated_parameters(unchecked) > MAX_PARAMETERS
        return
    vocab = config.tokenizer.vocab_size
    with torch.device("meta"):
        model = build_model(config.model, vocab, vocab, 0, joint_vocab=config.tokenizer.joint)
    count = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    assert count <= 2 * estimated_parameters(config)  # the estimate that guards allocation


BAD_RUNS = [
    (["info", "{dir}/list.yaml"], "section 'data' must be a mapping"),
    (["info", "{dir}/dup.yaml"], "given twice (also at line 1)"),
    (["train", "{dir}/ok.yaml", "--set", "train.adam_eps=0"], "train.adam_eps must be > 0"),
    (["prepare", "{dir}/ok.yaml", "--set", "model.d_model=" + "9" * 31], "model.d_model must"),
    (["train", "{dir}/ok.yaml", "--set", "train.lr=.nan"], "train.lr must be a finite number"),
    (["train", "{dir}/ok.yaml", "--set", "train.run_dir= "], "train.run_dir must name"),
    (["prepare", "{dir}/ok.yaml", "--set", "train.max_time=0s", "--set", "train.max_steps=0"],
     "set at least one of"),
    (["info", "{dir}"], "is a folder"),
]


@pytest.fixture(scope="module")
def bad_configs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "list.yaml").write_text("data: [a, b]\ntrain: {max_steps: 5}\n")
    (tmp / "dup.yaml").write_text("data: {train: a, dev: b}\ndata: {train: c}\n")
    (tmp / "ok.yaml").write_text(f"data: {{train: a, dev: b}}\ntrain: {{max_steps: 5, "
                                 f"run_dir: {tmp}/run}}\nmodel: {{d_model: 32, d_ff: 64}}\n")
    return tmp


@pytest.mark.parametrize("args, message", BAD_RUNS)
def test_bad_values_through_the_cli_exit_2_with_one_line(bad_configs, monkeypatch, capsys,
                                                          args, message):
    if args[0] == "info" and args[1] == "{dir}":
        args = ["info", str(bad_configs / "c.yaml")]
        (bad_configs / "c.yaml").mkdir(exist_ok=True)
    monkeypatch.setattr(sys, "argv", ["seq2seq", *(a.format(dir=bad_configs) for a in args)])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (bad_configs / "run").exists()

