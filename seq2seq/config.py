"""Configuration: one frozen dataclass per YAML section; load, validate, override, dump.

Defaults live only in these dataclasses; each section's validate() holds its ranges.
`configs/toy.yaml` documents every key.
"""

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq.config_checks import (
    build_entry,
    describe,
    parse_duration,
    require,
    unknown_key,
    within,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.yaml_file import parse_yaml, read_yaml

MAX_PARAMETERS = 10**10  # far beyond any model this tool trains; refused before allocation


CORPUS_SOURCES = ("prefix", "src_file", "tsv", "dataset", "parquet", "arrow")  # one per corpus
TABLE_SOURCES = ("dataset", "parquet", "arrow")  # the sources that have named columns


@dataclass(frozen=True)
class CorpusConfig:
    """One corpus as a mapping, in data.train's list or as data.dev / data.test: set exactly
    one of prefix, src_file with tgt_file, tsv, dataset, parquet, arrow (see docs/data.md)."""

    prefix: str = ""  # files {prefix}.{data.src} and {prefix}.{data.tgt}, each may be .gz
    src_file: str = ""  # the source-side file (plain or .gz), with tgt_file
    tgt_file: str = ""  # the target-side file, line i translating line i of src_file
    tsv: str = ""  # a file of `source<TAB>target` lines (plain or .gz)
    dataset: str = ""  # a Hugging Face dataset folder written by save_to_disk (extra)
    parquet: str = ""  # a Parquet file (extra: datasets)
    arrow: str = ""  # an Arrow IPC file, e.g. a datasets cache file (extra: datasets)
    split: str = ""  # dataset: the split of a DatasetDict folder; "" = its only split
    src_column: str = ""  # source text column; "" = the translation column, else data.src
    tgt_column: str = ""  # target text column; "" = the translation column, else data.tgt
    translation_column: str = ""  # column of {src: text, tgt: text} maps; "" = translation
    weight: float = 1.0  # data.train: relative sampling weight of this corpus, > 0

    def validate(self, key: str, training: bool) -> None:
        """Check one corpus; key names it in messages, e.g. data.train[1] or data.dev."""
        within(self, key, weight="(0, 1_000_000]")
        require(bool(self.src_file) == bool(self.tgt_file), f"{key}.src_file",
                 "and tgt_file go together: set both (or use prefix)")
        sources = [name for name in CORPUS_SOURCES if getattr(self, name)]
        require(sources, key, "names no corpus: set one of prefix, src_file (with "
                 "tgt_file), tsv, dataset, parquet or arrow")
        require(len(sources) == 1, key, f"sets both {sources[0]} and {sources[-1]}; a "
                 "corpus is one of them (list several corpora in data.train)")
        for name in (*CORPUS_SOURCES, "tgt_file", "split", "src_column", "tgt_column",
                     "translation_column"):
            value = getattr(self, name)
            require(value == value.strip(), f"{key}.{name}",
                     f"must not have surrounding spaces, got {value!r}")
        table = sources[0] in TABLE_SOURCES
        for name in ("src_column", "tgt_column", "translation_column"):
            require(table or not getattr(self, name), f"{key}.{name}",
                     "applies to dataset, parquet and arrow corpora only")
        require(bool(self.src_column) == bool(self.tgt_column), f"{key}.src_column",
                 "and tgt_column go together: set both, or neither to read the translation "
                 "column or the columns named data.src and data.tgt")
        require(not self.split or sources[0] == "dataset", f"{key}.split",
                 "applies to dataset corpora only")
        require(training or self.weight == 1.0, f"{key}.weight",
                 "applies to data.train corpora only (it weighs them against each other)")


Corpus = str | CorpusConfig  # a path prefix, or a corpus mapping


def _check_corpus(value: Corpus, key: str, training: bool,
                  required: bool) -> None:
    """A corpus key: a prefix string (may be empty unless required) or a CorpusConfig."""
    if isinstance(value, CorpusConfig):
        value.validate(key, training)
        return
    require(value.strip() or not required, key, "must name a corpus: a path prefix or a "
             "mapping such as {tsv: FILE} (see docs/data.md)")
    require(value == value.strip(), key,
             f"must be empty or a prefix without surrounding spaces, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    train: Corpus | tuple[Corpus, ...] = ""  # a prefix ({train}.{src|tgt}), a mapping or a list
    dev: Corpus = ""  # validation corpus (prefix or mapping), for validation loss and BLEU
    test: Corpus = ""  # optional test corpus, read by `evaluate` when no files are given
    src: str = "src"  # source language suffix
    tgt: str = "tgt"  # target language suffix
    max_len: int = 128  # training pairs with more subword tokens on either side are dropped

    def validate(self) -> None:
        within(self, "data", max_len="[1, 65_536]")
        if isinstance(self.train, tuple):
            require(self.train, "data.train", "must name at least one corpus, not an empty list")
            for i, corpus in enumerate(self.train):
                _check_corpus(corpus, f"data.train[{i}]", training=True, required=True)
        else:
            _check_corpus(self.train, "data.train", training=True, required=True)
        _check_corpus(self.dev, "data.dev", training=False, required=True)
        _check_corpus(self.test, "data.test", training=False, required=False)
        for key in ("src", "tgt"):
            require(re.fullmatch(r"[\w.+-]+", getattr(self, key)), f"data.{key}",
                     f"must be a file suffix such as de or en, got {getattr(self, key)!r}")
        require(self.src != self.tgt, "data.src", "must differ from data.tgt")


@dataclass(frozen=True)
class TokenizerConfig:
    joint: bool = True  # one SentencePiece model shared by both sides
    vocab_size: int = 8000  # a soft limit: small corpora get a smaller vocabulary
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"  # SentencePiece algorithm
    character_coverage: float = 1.0  # share of characters covered, in [0.9, 1]
    byte_fallback: bool = False  # unknown characters as 256 byte pieces, not <unk>
    sample_size: int = 1_000_000  # pairs SentencePiece trains on, drawn at random from data.train
    sample_seed: int = 1  # seed of that sample, in [0, 2**32)

    def validate(self) -> None:
        within(self, "tokenizer", vocab_size="[8, 1_000_000]", character_coverage="[0.9, 1]",
                sample_size="[1, 1_000_000_000]", sample_seed="[0, 4_294_967_296)")
        require(not (self.byte_fallback and self.model_type == "word"), "tokenizer.byte_fallback",
                 "needs model_type unigram, bpe or char (a word model spells no bytes)")


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["transformer", "rnn"] = "transformer"  # Transformer or GRU/LSTM baseline
    rnn_cell: Literal["gru", "lstm"] = "gru"  # arch rnn: the recurrent cell
    d_model: int = 256  # model width D (arch rnn: the hidden size)
    n_heads: int = 4  # attention heads H; d_model must be divisible by it
    d_ff: int = 1024  # feed-forward inner width
    encoder_layers: int = 3  # encoder layers
    decoder_layers: int = 3  # decoder layers
    dropout: float = 0.1  # dropout on embeddings, sublayer outputs and feed-forward, in [0, 1)
    attention_dropout: float = 0.0  # dropout on attention weights, in [0, 1)
    attention: Literal["scaled_dot", "dot", "cosine", "general", "additive", "none"] = (
        "scaled_dot")  # how a query scores a key
    norm: Literal["pre", "post"] = "pre"  # LayerNorm before each sublayer or after the residual
    tie_embeddings: bool = True  # target embedding = output layer weights
    share_embeddings: bool = True  # source and target embeddings shared (joint vocabulary only)
    max_positions: int = 512  # longest sequence (in tokens) the positional table covers

    def validate(self) -> None:
        within(self, "model", d_model="[1, 65_536]", n_heads="[1, 1024]", d_ff="[1, 262_144]",
                encoder_layers="[1, 256]", decoder_layers="[1, 256]", dropout="[0, 1)",
                attention_dropout="[0, 1)", max_positions="[8, 65_536]")
        require(self.d_model % self.n_heads == 0, "model.d_model",
                 f"({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.arch == "rnn":
            require(self.attention in ("dot", "general", "additive", "none"), "model.attention",
                     f"must be dot, general, additive or none for model.arch rnn, "
                     f"got {self.attention}")
            require(self.d_model % 2 == 0, "model.d_model",
                     f"({self.d_model}) must be even for model.arch rnn (the bidirectional "
                     "encoder gives each direction half)")
        else:
            require(self.attention != "none", "model.attention",
                     "none needs model.arch rnn (a Transformer reads the source only through "
                     "attention)")


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str = "runs/default"  # checkpoints, tokenizer, logs and the resolved config go here
    seed: int = 1  # random seed, in [0, 2**32)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16",  # autocast; fp16 needs CUDA; auto = bf16
                       "auto"] = "fp32"  # where matmuls run in bf16 (GPU, AVX-512 BF16, AMX)
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
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas, each in [0, 1)
    adam_eps: float = 1e-9  # AdamW epsilon, > 0
    weight_decay: float = 0.0  # AdamW decoupled weight decay, >= 0
    clip_norm: float = 1.0  # gradient-norm clipping; 0 = off
    label_smoothing: float = 0.1  # share of probability mass spread over the vocabulary
    log_every: int = 50  # steps between training log lines
    eval_every: int = 500  # steps between validations (loss, BLEU, chrF, checkpoints)
    eval_beam_size: int = 1  # 1 = greedy validation decoding
    eval_max_sentences: int = 0  # validate BLEU on the first N dev sentences; 0 = all
    patience: int = 0  # stop after N validations without a better BLEU; 0 = never
    keep_best: int = 1  # best-K checkpoints kept as best-<step>.pt (best.pt is the top one)
    average_best: int = 0  # at the end, write averaged.pt from the best K; 0 = off
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    init_from: str = ""  # fine-tune: start from this checkpoint's weights and tokenizer; "" = off
    tensorboard: bool = False  # also write TensorBoard events to RUN_DIR/tensorboard (extra)

    def validate(self) -> None:
        within(self, "train", seed="[0, 4_294_967_296)", threads="[0, 1024]",
                batch_tokens="[1, 16_777_216]", accumulate="[1, 4096]",
                max_steps="[0, 1_000_000_000]", max_epochs="[0, 1_000_000]", lr="(0, 10]",
                warmup="[0, 1_000_000_000]", betas="[0, 1)", adam_eps="(0, 1]",
                weight_decay="[0, 10]", clip_norm="[0, 1_000_000]", label_smoothing="[0, 1)",
                log_every="[1, 1_000_000_000]", eval_every="[1, 1_000_000_000]",
                eval_beam_size="[1, 1024]", eval_max_sentences="[0, 1_000_000_000]",
                patience="[0, 1_000_000]", keep_best="[1, 1000]", average_best="[0, 1000]",
                max_nonfinite="[1, 1_000_000]")
        require(self.run_dir.strip(), "train.run_dir",
                 "must name a directory (empty would train into the current directory)")
        seconds = parse_duration(self.max_time)
        require(seconds <= 366 * 86400, "train.max_time", f"({self.max_time}) exceeds a year")
        require(self.max_steps or self.max_epochs or seconds, "train.max_steps",
                 "set at least one of train.max_steps, train.max_epochs, train.max_time "
                 "(0 means no limit)")
        require(self.average_best <= self.keep_best, "train.average_best",
                 f"({self.average_best}) needs train.keep_best >= it ({self.keep_best})")
        require(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)), "train.device",
                 f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        require(self.init_from == self.init_from.strip(), "train.init_from",
                 f"must be empty or a checkpoint path without surrounding spaces, got "
                 f"{self.init_from!r}")


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 5  # 1 = greedy
    length_penalty: float = 1.0  # alpha of the GNMT penalty ((5 + len) / 6) ** alpha
    max_len_ratio: float = 1.5  # output tokens <= max_len_ratio * source tokens + 10
    batch_size: int = 128  # sentences per decoding batch

    def validate(self) -> None:
        within(self, "decode", beam_size="[1, 1024]", length_penalty="[0, 10]",
                max_len_ratio="(0, 100]", batch_size="[1, 65_536]")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)  # where the parallel text is
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # SentencePiece
    model: ModelConfig = field(default_factory=ModelConfig)  # the network
    train: TrainConfig = field(default_factory=TrainConfig)  # the training run
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # translate and evaluate

    def validate(self) -> "Config":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        count = estimated_parameters(self)
        require(count <= MAX_PARAMETERS, "model",
                 f"would have about {count:.1e} parameters, over the limit of "
                 f"{MAX_PARAMETERS:.0e}; lower model.d_model, model.d_ff, the layers or "
                 "tokenizer.vocab_size")
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data (tuples become lists) for YAML files and checkpoints."""
        return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(self))))


def estimated_parameters(config: Config) -> int:
    """About how many parameters config's model has, with tokenizer.vocab_size pieces."""
    m, d = config.model, config.model.d_model
    tables = 1 + (not (m.share_embeddings and config.tokenizer.joint)) + (not m.tie_embeddings)
    if m.arch == "rnn":  # an LSTM layer holds 4 gates of (input + hidden) x hidden weights
        layers = 8 * d * d * (m.encoder_layers + m.decoder_layers) + 3 * d * d
    else:  # self-attention 4 D^2, cross-attention 4 D^2 more, feed-forward 2 D d_ff
        ff = 2 * d * m.d_ff
        layers = m.encoder_layers * (4 * d * d + ff) + m.decoder_layers * (8 * d * d + ff)
    return tables * config.tokenizer.vocab_size * d + layers + m.max_positions * d


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build_section(cls: type, values: Any, source: str, section: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Seq2SeqError(f"{source}: section '{section}' must be a mapping of keys to values, "
                           f"got {describe(values)}")
    return build_entry(cls, values, f"{source}: {section}")


def from_dict(raw: Any, source: str = "config") -> Config:
    """Build and validate a Config from nested plain data (a parsed YAML file)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Seq2SeqError(f"{source}: expected a mapping of sections (data, model, ...), "
                           f"got {describe(raw)}")
    hints = typing.get_type_hints(Config)
    sections = {}
    for name, values in raw.items():
        if name not in hints:
            raise unknown_key(str(name), list(hints), source)
        sections[name] = _build_section(hints[name], values, source, name)
    config = Config(**sections)
    try:
        return config.validate()
    except Seq2SeqError as error:
        raise Seq2SeqError(f"{source}: {error}") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ['section.key=value', ...] to parsed YAML; values are parsed as YAML scalars."""
    raw = dict(raw or {})
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise Seq2SeqError(f"--set {item!r}: write section.key=value, e.g. train.lr=0.001")
        try:
            value = parse_yaml(text) if text.strip() else ""
        except Exception:  # any text that is not a YAML value is taken as a string
            value = text
        values = {} if raw.get(section) is None else raw[section]
        if not isinstance(values, dict):
            raise Seq2SeqError(f"--set {item!r}: section '{section}' in the config is "
                               f"{describe(values)}, not a mapping of keys to values")
        raw[section] = {**values, name: value}
    return raw


def load_config(path: Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply --set overrides, validate."""
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise Seq2SeqError(f"{path}: expected a mapping of sections (data, model, ...), "
                           f"got {describe(raw)}")
    return from_dict(apply_overrides(raw or {}, list(overrides)), source=str(path))


def dump_config(config: Config, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def replace(config: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some keys changed, e.g. replace(cfg, train={"max_steps": 10})."""
    changed = {name: dataclasses.replace(getattr(config, name), **values)
               for name, values in sections.items()}
    return dataclasses.replace(config, **changed).validate()
