"""The stage before training: check the inputs, SentencePiece models tied to what they were
trained on, and the corpus as cached token ids.

Each model file the run dir holds (spm.model, or spm.SRC.model and spm.TGT.model) has a
manifest beside it (spm.model.json): the tokenizer.* settings and a fingerprint of the
training files it was trained with, and a hash of the model itself. A model whose manifest
no longer matches the config is retrained (refused under --resume); one without a manifest
was not written by this seq2seq and is used as it is, with a note.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import Config, TokenizerConfig
from seq2seq.corpora.parallel import (
    check_corpora,
    corpus_spec,
    read_corpus,
    read_training_text,
    training_corpora,
)
from seq2seq.data import EncodedCorpus, ParallelText, encode_parallel, filter_long
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write
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


# ---------------------------------------------------------------- tokenizers


def prepare(config: Config, log=print, resume: bool = False) -> tuple[Tokenizer, Tokenizer]:
    """The run's tokenizers: reused when they match the config and the training text,
    else trained on the training text and saved in the run dir with their manifests.

    resume: refuse (Seq2SeqError) to retrain a model the checkpoints were trained with.
    Returns (source tokenizer, target tokenizer); the same object when joint.
    """
    sides = ([("joint", tokenizer_paths(config)[0])] if config.tokenizer.joint
             else list(zip(("src", "tgt"), tokenizer_paths(config), strict=True)))
    text, made = None, {}
    for side, path in sides:
        record = _record(config, side)
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
        if text is None:
            text = read_training_text(config)
        lines = text.src + text.tgt if side == "joint" else getattr(text, side)
        tok = config.tokenizer
        made[side] = train_tokenizer(lines, tok.vocab_size, tok.model_type,
                                     tok.character_coverage, byte_fallback=tok.byte_fallback)
        _save(made[side], path, record)
        log(f"prepare: {SIDE_NAMES[side]} SentencePiece model, {made[side].vocab_size} "
            f"pieces -> {path}")
    if config.tokenizer.joint:
        return made["joint"], made["joint"]
    return made["src"], made["tgt"]


load_or_prepare = prepare  # the name the training loop knows


def adopt(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, source: str) -> None:
    """Save tokenizers taken from a checkpoint (train.init_from) as the run's own, with a
    manifest naming `source`: prepare then reuses them (also under --resume), never
    retraining them on this run's text, since the weights depend on them."""
    sides = ([("joint", tokenizer_paths(config)[0], src_tok)] if config.tokenizer.joint
             else list(zip(("src", "tgt"), tokenizer_paths(config), (src_tok, tgt_tok),
                           strict=True)))
    for side, path, tok in sides:
        _save(tok, path, {**_record(config, side), "adopted_from": source})


def _record(config: Config, side: str) -> dict:
    """What a tokenizer depends on: its settings and the content of the training files."""
    specs = training_corpora(config)
    files = [path for spec in specs for path in spec.files]
    # one plain corpus keeps the keys src and tgt, so existing manifests stay current
    keys = (("src", "tgt") if len(specs) == 1 and specs[0].kind == "plain"
            else [str(path) for path in files])
    text = {key: {"path": str(path), **_fingerprint(path)}
            for key, path in zip(keys, files, strict=True)}
    settings = {**dataclasses.asdict(config.tokenizer), "side": side}
    return json.loads(json.dumps({"settings": settings, "text": text}))  # as read back


def _fingerprint(path: Path) -> dict:
    h, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise Seq2SeqError(f"cannot read {path}: {e.strerror}; check data.train") from None
    return {"size": size, "sha256": h.hexdigest()}


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
    adopted = saved.get("adopted_from")  # not trained on this text: the text may differ
    changes += [f"the training text {now['path']} changed" for side, now in record["text"].items()
                if adopted is None and (not isinstance(text.get(side), dict)
                                        or text[side].get("sha256") != now["sha256"])]
    changes += [f"the training text {text[side].get('path', side)} is no longer in data.train"
                for side in text if adopted is None and side not in record["text"]
                and isinstance(text[side], dict)]
    if changes:
        return "stale", "; ".join(changes)
    if adopted is not None:
        return "current", f"taken from {adopted} (train.init_from)"
    return "current", "trained with these tokenizer.* settings on this training text"


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
    train: EncodedCorpus
    dev: EncodedCorpus
    dev_text: ParallelText


def load_training_data(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
                       log=print) -> TrainingData:
    """Read, tokenize (once, cached in the run dir) and length-filter train and dev."""
    cache = Path(config.train.run_dir) / "cache"
    text = read_training_text(config)
    train, too_long = filter_long(encode_parallel(text, src_tok, tgt_tok, cache),
                                  config.data.max_len)
    log(f"data: {len(train.src)} training pairs; dropped {text.dropped_empty} with an empty "
        f"side and {too_long} longer than data.max_len={config.data.max_len} tokens")
    dev_text = read_corpus(corpus_spec(config, "data.dev"))
    dev = encode_parallel(dev_text, src_tok, tgt_tok, cache)
    return TrainingData(train, dev, dev_text)
