"""The stage before training: check the inputs, SentencePiece models tied to what they were
trained on, and the training corpora encoded once into the token store (seq2seq.store).

Each model file the run dir holds (spm.model, or spm.SRC.model and spm.TGT.model) has a
manifest beside it (spm.model.json): the tokenizer.* settings and a fingerprint of the
training files it was trained with, and a hash of the model itself. A model whose manifest
no longer matches the config is retrained (refused under --resume); one without a manifest
was not written by this seq2seq and is used as it is, with a note. SentencePiece trains on
a seeded random sample of tokenizer.sample_size pairs, so its time and memory are bounded
whatever the corpus size.
"""

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import Config, TokenizerConfig
from seq2seq.corpora.parallel import (
    CorpusSpec,
    ParallelText,
    check_corpora,
    corpus_spec,
    fingerprint,
    iter_pairs,
    read_corpus,
    sample_pairs,
    training_corpora,
)
from seq2seq.data import EncodedCorpus, TrainSet, encode_parallel
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write
from seq2seq.store import TokenStore, build_store, built_from, counts_of, open_store, summary
from seq2seq.tokenizer import Tokenizer, train_tokenizer

SPLITS = ("train", "dev")  # what training reads; evaluate checks data.test itself
SIDE_NAMES = {"joint": "joint", "src": "source", "tgt": "target"}


def tokenizer_paths(config: Config) -> tuple[Path, Path]:
    """Where prepare writes the SentencePiece model(s): one joint file or one per side."""
    run = Path(config.train.run_dir)
    if config.tokenizer.joint:
        return run / "spm.model", run / "spm.model"
    return run / f"spm.{config.data.src}.model", run / f"spm.{config.data.tgt}.model"


def manifest_path(model: Path) -> Path:
    """The record of what `model` was trained on: spm.model -> spm.model.json."""
    return model.with_name(model.name + ".json")


# ---------------------------------------------------------------- inputs, before any work


def check_inputs(config: Config, splits: tuple[str, ...] = SPLITS) -> None:
    """Raise Seq2SeqError, in one line, for a data file the run reads that is missing or
    unreadable, naming the config key (train and dev by default; a set data.test on request).

    Runs before any work, so a mistyped data.dev is not found after the tokenizer trained.
    """
    check_corpora(config, splits)


@dataclass(frozen=True)
class Corpora:
    """data.train's corpora and their fingerprints, taken once for the tokenizers and store."""

    specs: list[CorpusSpec]
    fingerprints: list[dict]


def training_inputs(config: Config) -> Corpora:
    """data.train's corpora, resolved, and each one's fingerprint (its files hashed)."""
    specs = training_corpora(config)
    return Corpora(specs, [fingerprint(spec) for spec in specs])


# ---------------------------------------------------------------- tokenizers


def prepare(config: Config, log=print, resume: bool = False,
            corpora: Corpora | None = None) -> tuple[Tokenizer, Tokenizer]:
    """The run's tokenizers: reused when they match the config and the training text,
    else trained on a sample of the training text and saved in the run dir with their
    manifests.

    resume: refuse (Seq2SeqError) to retrain a model the checkpoints were trained with.
    corpora: training_inputs(config), when the caller has it already.
    Returns (source tokenizer, target tokenizer); the same object when joint.
    """
    corpora = corpora or training_inputs(config)
    sides = ([("joint", tokenizer_paths(config)[0])] if config.tokenizer.joint
             else list(zip(("src", "tgt"), tokenizer_paths(config), strict=True)))
    sample, made = None, {}
    for side, path in sides:
        record = _record(config, side, corpora)
        state, why = _status(path, record)
        if state in ("current", "foreign"):
            made[side] = Tokenizer.load(path)
            log(f"tokenizer: reusing {path} ({why})")
            continue
        if state == "stale":
            if resume:
                raise Seq2SeqError(f"--resume: {path} was trained differently ({why}), and "
                                   "the checkpoints depend on it; restore the settings and "
                                   "data, or train into a new train.run_dir")
            log(f"tokenizer: retraining {path}: {why}")
        start = time.perf_counter()  # the first side's time includes drawing the sample
        if sample is None:
            sample = _sample(config, corpora.specs)
        src_lines, tgt_lines = sample
        lines = {"joint": src_lines + tgt_lines, "src": src_lines, "tgt": tgt_lines}[side]
        tok = config.tokenizer
        made[side] = train_tokenizer(lines, tok.vocab_size, tok.model_type,
                                     tok.character_coverage, byte_fallback=tok.byte_fallback)
        _save(made[side], path, record)
        log(f"prepare: {SIDE_NAMES[side]} SentencePiece model, {made[side].vocab_size} "
            f"pieces, from {_drawn(len(src_lines), config)} -> {path} in "
            f"{time.perf_counter() - start:.1f}s")
    if config.tokenizer.joint:
        return made["joint"], made["joint"]
    return made["src"], made["tgt"]


load_or_prepare = prepare  # the name the training loop knows


def _sample(config: Config, specs: list[CorpusSpec]) -> tuple[list[str], list[str]]:
    """tokenizer.sample_size pairs drawn at random (tokenizer.sample_seed) from all of
    data.train's corpora, in corpus order; every pair when there are fewer."""
    tok = config.tokenizer
    src, tgt = sample_pairs(specs, tok.sample_size, tok.sample_seed)
    if not src:  # every corpus is empty: read_corpus says so, with its count of lines
        for spec in specs:
            read_corpus(spec)
    return src, tgt


def _drawn(n: int, config: Config) -> str:
    """What the tokenizer trained on: a sample, or the whole text when it is no larger."""
    if n < config.tokenizer.sample_size:
        return f"all {n:,} non-empty pairs"
    return f"{n:,} pairs drawn at random (tokenizer.sample_size)"


def adopt(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, source: str) -> None:
    """Save tokenizers taken from a checkpoint (train.init_from) as the run's own, with a
    manifest naming `source`: prepare then reuses them (also under --resume), never
    retraining them on this run's text, since the weights depend on them."""
    sides = ([("joint", tokenizer_paths(config)[0], src_tok)] if config.tokenizer.joint
             else list(zip(("src", "tgt"), tokenizer_paths(config), (src_tok, tgt_tok),
                           strict=True)))
    corpora = training_inputs(config)
    for side, path, tok in sides:
        _save(tok, path, {**_record(config, side, corpora), "adopted_from": source})


def _record(config: Config, side: str, corpora: Corpora) -> dict:
    """What a tokenizer depends on: its settings and the content of the training files."""
    files = [f for fp in corpora.fingerprints for f in fp["files"]]
    # one plain corpus keeps the keys src and tgt, as manifests had them before corpus lists
    plain = len(corpora.specs) == 1 and corpora.specs[0].kind == "plain"
    keys = ("src", "tgt") if plain else [f["path"] for f in files]
    text = {key: {"path": f["path"], "size": f["size"], "sha256": f["sha256"]}
            for key, f in zip(keys, files, strict=True)}
    settings = {**dataclasses.asdict(config.tokenizer), "side": side}
    return json.loads(json.dumps({"settings": settings, "text": text}))  # as read back


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise Seq2SeqError(f"cannot read tokenizer {path}: {e.strerror}") from None


def _status(path: Path, record: dict) -> tuple[str, str]:
    """('missing' | 'foreign' | 'stale' | 'current', why) for the model file at `path`."""
    manifest = manifest_path(path)
    if not path.is_file():
        return "missing", ""
    if not manifest.is_file():
        return "foreign", (f"no {manifest.name} says what it was trained on, so it is used as "
                           "it is; delete it to train one from tokenizer.*")
    try:
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        model_hash, settings, text = saved["model_sha256"], saved["settings"], saved["text"]
        if not (isinstance(settings, dict) and isinstance(text, dict)):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return "stale", f"its manifest {manifest.name} is unreadable"
    if model_hash != _sha256(path):
        raise Seq2SeqError(f"{path} is not the model {manifest.name} describes (replaced by "
                           "hand, or a save was interrupted); delete both to train a new one, "
                           f"or delete {manifest.name} to use {path.name} as it is")
    # a key newer than the manifest was trained at its default, so it changes nothing
    settings = {**dataclasses.asdict(TokenizerConfig()), **settings}
    changes = [f"tokenizer.{k} {settings.get(k)!r} -> {v!r}"
               for k, v in record["settings"].items() if settings.get(k) != v]
    if saved.get("adopted_from") is None:  # one adopted was not trained on this text
        changes += _text_changes(text, record["text"])
    if changes:
        return "stale", "; ".join(changes)
    if saved.get("adopted_from") is not None:
        return "current", f"taken from {saved['adopted_from']} (train.init_from)"
    return "current", "trained with these tokenizer.* settings on this training text"


def _text_changes(saved: dict, now: dict) -> list[str]:
    """The training files whose content a manifest did not record, or that it recorded
    and data.train no longer has. Compared by content, whatever the keys."""
    before = {v.get("sha256"): v.get("path", key) for key, v in saved.items()
              if isinstance(v, dict)}
    paths = set(before.values())
    changed = [f"the training text {f['path']} "
               + ("changed" if f["path"] in paths else "is new in data.train")
               for f in now.values() if f["sha256"] not in before]
    if changed:
        return changed
    after = {f["sha256"] for f in now.values()}
    return [f"the training text {path} is no longer in data.train"
            for sha, path in before.items() if sha not in after]


def _save(tok: Tokenizer, path: Path, record: dict) -> None:
    """The model, then its manifest: a kill between them leaves a model without one."""
    tok.save(path)
    manifest = {**record, "model_sha256": hashlib.sha256(tok.model_bytes).hexdigest()}
    data = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    try:
        atomic_write(manifest_path(path), lambda f: f.write(data))
    except OSError as e:
        raise Seq2SeqError(f"cannot write {manifest_path(path)}: {e.strerror}") from None


# ---------------------------------------------------------------- token ids


@dataclass
class TrainingData:
    train: TrainSet  # the token store, memory-mapped
    dev: EncodedCorpus  # dev is small: its ids and text stay in memory
    dev_text: ParallelText


def load_training_data(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, log=print,
                       corpora: Corpora | None = None, build: bool = True,
                       bar: bool = False) -> TrainingData:
    """The training pairs from the token store (built first when missing or stale) and
    the dev set encoded in memory.

    build: False on the processes that only map the store rank 0 has built (a store
    that does not fit is then an error). bar: a progress bar for a build.
    """
    corpora = corpora or training_inputs(config)
    store = prepare_store(config, src_tok, tgt_tok, corpora, log, build, bar)
    counts = counts_of(store)
    log(f"data: {len(store)} training pairs; dropped {counts.empty} with an empty side and "
        f"{counts.too_long} longer than data.max_len={config.data.max_len} tokens")
    dev_text = read_corpus(corpus_spec(config, "data.dev"))
    dev = encode_parallel(dev_text, src_tok, tgt_tok)
    return TrainingData(TrainSet(store, tuple(s.weight for s in corpora.specs)), dev, dev_text)


def prepare_store(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, corpora: Corpora,
                  log=print, build: bool = True, bar: bool = False) -> TokenStore:
    """RUN_DIR/store when it was built from these corpora and tokenizers, else built now;
    logs the summary line either way (pairs, drops by reason, tokens, size, time)."""
    folder = Path(config.train.run_dir) / "store"
    wanted = built_from(src_tok, tgt_tok, corpora.fingerprints, config.data.max_len)
    start = time.perf_counter()
    store, why = open_store(folder, wanted)
    if store is not None:
        log(summary(counts_of(store), folder, time.perf_counter() - start, built=False))
        return store
    if not build:
        raise Seq2SeqError(f"the token store {folder} cannot be used here ({why}): rank 0 "
                           "built it from other files; every process must see the same run "
                           "directory and data files")
    log(f"prepare: encoding the training corpora into {folder} ({why})")
    pairs = [(spec.name, iter_pairs(spec)) for spec in corpora.specs]
    store, counts = build_store(folder, pairs, src_tok, tgt_tok, config.data.max_len, wanted,
                                log, bar)
    log(summary(counts, folder, time.perf_counter() - start, built=True))
    return store
