"""Configuration: one frozen dataclass per YAML section; load, validate, override, dump.

Defaults live only in these dataclasses. `configs/toy.yaml` documents every key.
"""

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class DataConfig:
    train: str = ""  # path prefix: the files are {train}.{src} and {train}.{tgt}
    dev: str = ""  # validation prefix, used for validation loss and BLEU
    test: str = ""  # optional test prefix, used by `evaluate` when no files are given
    src: str = "src"  # source language suffix
    tgt: str = "tgt"  # target language suffix
    max_len: int = 128  # training pairs with more subword tokens on either side are dropped

    def validate(self) -> None:
        _require(bool(self.train), "data.train", "must name a training prefix")
        _require(bool(self.dev), "data.dev", "must name a validation prefix")
        _require(self.src != self.tgt, "data.src", "must differ from data.tgt")
        _require(self.max_len >= 1, "data.max_len", "must be >= 1")


@dataclass(frozen=True)
class TokenizerConfig:
    joint: bool = True  # one SentencePiece model shared by both sides
    vocab_size: int = 8000  # a soft limit: small corpora get a smaller vocabulary
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    character_coverage: float = 1.0

    def validate(self) -> None:
        _require(self.vocab_size >= 8, "tokenizer.vocab_size", "must be >= 8")
        _require(0.9 <= self.character_coverage <= 1.0, "tokenizer.character_coverage",
                 "must lie in [0.9, 1.0]")


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["transformer", "rnn"] = "transformer"
    rnn_cell: Literal["gru", "lstm"] = "gru"  # arch rnn: the recurrent cell
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    attention: Literal["scaled_dot", "dot", "cosine", "general", "additive", "none"] = (
        "scaled_dot")
    norm: Literal["pre", "post"] = "pre"
    tie_embeddings: bool = True  # target embedding = output layer weights
    share_embeddings: bool = True  # source and target embeddings shared (joint vocabulary only)
    max_positions: int = 512

    def validate(self) -> None:
        _require(self.d_model >= 1, "model.d_model", "must be >= 1")
        _require(self.n_heads >= 1, "model.n_heads", "must be >= 1")
        _require(self.d_model % self.n_heads == 0, "model.d_model",
                 f"({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        _require(self.d_ff >= 1, "model.d_ff", "must be >= 1")
        _require(self.encoder_layers >= 1, "model.encoder_layers", "must be >= 1")
        _require(self.decoder_layers >= 1, "model.decoder_layers", "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "must lie in [0, 1)")
        _require(0.0 <= self.attention_dropout < 1.0, "model.attention_dropout",
                 "must lie in [0, 1)")
        _require(self.max_positions >= 8, "model.max_positions", "must be >= 8")
        if self.arch == "rnn":
            _require(self.attention in ("dot", "general", "additive", "none"), "model.attention",
                     f"must be dot, general, additive or none for model.arch rnn, "
                     f"got {self.attention}")
            _require(self.d_model % 2 == 0, "model.d_model",
                     f"({self.d_model}) must be even for model.arch rnn (the bidirectional "
                     "encoder gives each direction half)")
        else:
            _require(self.attention != "none", "model.attention",
                     "none needs model.arch rnn (a Transformer reads the source only through "
                     "attention)")


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str = "runs/default"  # checkpoints, tokenizer, logs and the resolved config go here
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 needs CUDA
    compile: bool = False  # torch.compile the model
    fast: bool = True  # CPU kernels from seq2seq/fast; false = the plain reference path
    threads: int = 0  # intra-op CPU threads; 0 = the number of physical cores
    batch_tokens: int = 4096  # padded target tokens per batch (per process)
    accumulate: int = 1  # batches per optimizer step
    max_steps: int = 0  # 0 = no limit
    max_epochs: int = 0  # 0 = no limit
    max_time: str = ""  # training-time budget (validation not counted), e.g. "60m"; "" = none
    lr: float = 7e-4  # peak learning rate, reached at the end of warm-up
    warmup: int = 4000  # linear warm-up steps, then the schedule's decay
    schedule: Literal["inverse_sqrt", "linear", "cosine"] = "inverse_sqrt"  # decay after warm-up
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # gradient-norm clipping; 0 = off
    label_smoothing: float = 0.1
    log_every: int = 50  # steps between training log lines
    eval_every: int = 500  # steps between validations (loss, BLEU, chrF, checkpoints)
    eval_beam_size: int = 1  # 1 = greedy validation decoding
    eval_max_sentences: int = 0  # validate BLEU on the first N dev sentences; 0 = all
    patience: int = 0  # stop after N validations without a better BLEU; 0 = never
    keep_best: int = 1  # best-K checkpoints kept as best-<step>.pt (best.pt is the top one)
    average_best: int = 0  # at the end, write averaged.pt from the best K; 0 = off
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row

    def validate(self) -> None:
        _require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _require(self.warmup >= 0, "train.warmup", "must be >= 0")
        _require(self.batch_tokens >= 1, "train.batch_tokens", "must be >= 1")
        _require(self.accumulate >= 1, "train.accumulate", "must be >= 1")
        _require(self.max_steps >= 0, "train.max_steps", "must be >= 0")
        _require(self.max_epochs >= 0, "train.max_epochs", "must be >= 0")
        _require(self.max_steps or self.max_epochs or self.max_time, "train.max_steps",
                 "set at least one of train.max_steps, train.max_epochs, train.max_time")
        parse_duration(self.max_time)
        _require(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing", "must lie in [0, 1)")
        _require(self.clip_norm >= 0, "train.clip_norm", "must be >= 0")
        _require(self.threads >= 0, "train.threads", "must be >= 0")
        _require(self.log_every >= 1, "train.log_every", "must be >= 1")
        _require(self.eval_every >= 1, "train.eval_every", "must be >= 1")
        _require(self.eval_beam_size >= 1, "train.eval_beam_size", "must be >= 1")
        _require(self.keep_best >= 1, "train.keep_best", "must be >= 1")
        _require(self.average_best >= 0, "train.average_best", "must be >= 0")
        _require(self.average_best <= self.keep_best, "train.average_best",
                 f"({self.average_best}) needs train.keep_best >= it ({self.keep_best})")
        _require(self.max_nonfinite >= 1, "train.max_nonfinite", "must be >= 1")
        _require(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)), "train.device",
                 f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 5  # 1 = greedy
    length_penalty: float = 1.0  # alpha of the GNMT penalty ((5 + len) / 6) ** alpha
    max_len_ratio: float = 1.5  # output tokens <= max_len_ratio * source tokens + 10
    batch_size: int = 128  # sentences per decoding batch

    def validate(self) -> None:
        _require(self.beam_size >= 1, "decode.beam_size", f"must be >= 1, got {self.beam_size}")
        _require(self.length_penalty >= 0, "decode.length_penalty", "must be >= 0")
        _require(self.max_len_ratio > 0, "decode.max_len_ratio", "must be > 0")
        _require(self.batch_size >= 1, "decode.batch_size", "must be >= 1")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def validate(self) -> "Config":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data (tuples become lists) for YAML files and checkpoints."""
        return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(self))))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _require(ok: Any, key: str, message: str) -> None:
    if not ok:
        raise Seq2SeqError(f"{key} {message}")


def parse_duration(text: str) -> float:
    """'90s', '60m', '1h30m', '2h' or a bare number of seconds -> seconds; '' -> 0."""
    text = str(text).strip()
    if not text:
        return 0.0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not match or not any(match.groups()):
        raise Seq2SeqError(f"train.max_time: cannot read {text!r}; write e.g. 90s, 60m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return value converted to annotation's type, or raise naming `where`."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(map(str, typing.get_args(annotation)))
            raise Seq2SeqError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise Seq2SeqError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args, strict=True))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. max_time: 3600
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise Seq2SeqError(
            f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def _unknown_key(key: str, valid: list[str], where: str) -> Seq2SeqError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return Seq2SeqError(f"{where}: unknown key {key!r}{hint}")


def _build_section(cls: type, values: Any, source: str, section: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Seq2SeqError(f"{source}: section '{section}' must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise _unknown_key(str(key), valid, f"{source}: {section}")
        kwargs[key] = _check_type(value, hints[key], f"{source}: {section}.{key}")
    return cls(**kwargs)


def from_dict(raw: Any, source: str = "config") -> Config:
    """Build and validate a Config from nested plain data (a parsed YAML file)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Seq2SeqError(f"{source}: expected a mapping of sections (data, model, ...)")
    hints = typing.get_type_hints(Config)
    sections = {}
    for name, values in raw.items():
        if name not in hints:
            raise _unknown_key(str(name), list(hints), source)
        sections[name] = _build_section(hints[name], values, source, name)
    config = Config(**sections)
    try:
        return config.validate()
    except Seq2SeqError as error:
        raise Seq2SeqError(f"{source}: {error}") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely; errors name the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Seq2SeqError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise Seq2SeqError(f"cannot read config {path}: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise Seq2SeqError(f"{path}: invalid YAML{where}: {problem}") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ['section.key=value', ...] to parsed YAML; values are parsed as YAML scalars."""
    raw = {k: dict(v or {}) for k, v in (raw or {}).items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise Seq2SeqError(f"--set {item!r}: write section.key=value, e.g. train.lr=0.001")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        raw.setdefault(section, {})[name] = value
    return raw


def load_config(path: Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply --set overrides, validate."""
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise Seq2SeqError(f"{path}: expected a mapping of sections (data, model, ...)")
    return from_dict(apply_overrides(raw or {}, list(overrides)), source=str(path))


def dump_config(config: Config, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def replace(config: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some keys changed, e.g. replace(cfg, train={"max_steps": 10})."""
    changed = {name: dataclasses.replace(getattr(config, name), **values)
               for name, values in sections.items()}
    return dataclasses.replace(config, **changed).validate()

