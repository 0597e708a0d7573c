"""The stage before training: SentencePiece models, and the corpus as cached token ids."""

from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import Config
from seq2seq.data import EncodedCorpus, ParallelText, encode_parallel, filter_long, read_parallel
from seq2seq.tokenizer import Tokenizer, train_tokenizer


def tokenizer_paths(config: Config) -> tuple[Path, Path]:
    """Where prepare writes the SentencePiece model(s): one joint file or one per side."""
    run = Path(config.train.run_dir)
    if config.tokenizer.joint:
        return run / "spm.model", run / "spm.model"
    return run / f"spm.{config.data.src}.model", run / f"spm.{config.data.tgt}.model"


def corpus_paths(config: Config, prefix: str) -> tuple[Path, Path]:
    """{prefix}.{src} and {prefix}.{tgt}."""
    return Path(f"{prefix}.{config.data.src}"), Path(f"{prefix}.{config.data.tgt}")


def prepare(config: Config, log=print) -> tuple[Tokenizer, Tokenizer]:
    """Train the SentencePiece model(s) on the training text and save them in the run dir."""
    text = read_parallel(*corpus_paths(config, config.data.train))
    tok = config.tokenizer
    src_path, tgt_path = tokenizer_paths(config)
    if tok.joint:
        joint = train_tokenizer(text.src + text.tgt, tok.vocab_size, tok.model_type,
                                tok.character_coverage)
        joint.save(src_path)
        log(f"prepare: joint SentencePiece model, {joint.vocab_size} pieces -> {src_path}")
        return joint, joint
    src_tok = train_tokenizer(text.src, tok.vocab_size, tok.model_type, tok.character_coverage)
    tgt_tok = train_tokenizer(text.tgt, tok.vocab_size, tok.model_type, tok.character_coverage)
    src_tok.save(src_path)
    tgt_tok.save(tgt_path)
    log(f"prepare: SentencePiece models, {src_tok.vocab_size} source pieces -> {src_path}, "
        f"{tgt_tok.vocab_size} target pieces -> {tgt_path}")
    return src_tok, tgt_tok


def load_or_prepare(config: Config, log=print) -> tuple[Tokenizer, Tokenizer]:
    """The run's tokenizers, trained first if they are not there yet."""
    src_path, tgt_path = tokenizer_paths(config)
    if src_path.is_file() and tgt_path.is_file():
        src_tok = Tokenizer.load(src_path)
        return src_tok, (src_tok if src_path == tgt_path else Tokenizer.load(tgt_path))
    return prepare(config, log)


@dataclass
class TrainingData:
    train: EncodedCorpus
    dev: EncodedCorpus
    dev_text: ParallelText


def load_training_data(config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer,
                       log=print) -> TrainingData:
    """Read, tokenize (once, cached in the run dir) and length-filter train and dev."""
    cache = Path(config.train.run_dir) / "cache"
    text = read_parallel(*corpus_paths(config, config.data.train))
    train, too_long = filter_long(encode_parallel(text, src_tok, tgt_tok, cache),
                                  config.data.max_len)
    log(f"data: {len(train.src)} training pairs; dropped {text.dropped_empty} with an empty "
        f"side and {too_long} longer than data.max_len={config.data.max_len} tokens")
    dev_text = read_parallel(*corpus_paths(config, config.data.dev))
    dev = encode_parallel(dev_text, src_tok, tgt_tok, cache)
    return TrainingData(train, dev, dev_text)
