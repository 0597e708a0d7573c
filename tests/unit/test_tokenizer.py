"""Tokenizer: training in memory, special ids, round trips, serialisation, errors, silence."""

import random
from pathlib import Path

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_tokenizer

WORDS = "the a cat dog sat on mat red blue house car runs fast slow big small über café naïve"


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    """n sentences of 3-10 words drawn from a small word list."""
    rng = random.Random(seed)
    words = WORDS.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return synthetic_lines(300)


@pytest.fixture(scope="module")
def tok(lines: list[str]) -> Tokenizer:
    return train_tokenizer(lines, vocab_size=60)


def test_special_ids(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert tok.pieces([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 4 < tok.vocab_size <= 60


def test_encode_adds_no_specials_and_round_trips(tok: Tokenizer, lines: list[str]) -> None:
    ids = tok.encode(lines[:20])
    assert len(ids) == 20
    assert all(ids_i and min(ids_i) > EOS_ID for ids_i in ids)  # no pad/unk/bos/eos
    assert tok.decode(ids) == lines[:20]


def test_decode_drops_pad_bos_and_stops_at_eos(tok: Tokenizer) -> None:
    ids = tok.encode(["the cat", "red car"])
    searched = [
        [BOS_ID, *ids[0], EOS_ID, PAD_ID, PAD_ID],
        [BOS_ID, *ids[1], EOS_ID, *ids[0], EOS_ID],  # anything after the first EOS is ignored
    ]
    assert tok.decode(searched) == ["the cat", "red car"]
    assert tok.decode([[BOS_ID, EOS_ID], []]) == ["", ""]
    assert tok.decode([]) == [] and tok.encode([]) == []


def test_decode_accepts_a_tensor(tok: Tokenizer) -> None:
    torch = pytest.importorskip("torch")
    ids = tok.encode(["the cat sat"])[0]
    assert tok.decode(torch.tensor([[BOS_ID, *ids, EOS_ID]])) == ["the cat sat"]


def test_pieces_are_subword_strings(tok: Tokenizer) -> None:
    pieces = tok.pieces(tok.encode(["the cat"])[0])
    assert "".join(pieces).replace("\u2581", " ").strip() == "the cat"


def test_unknown_characters_do_not_crash(tok: Tokenizer) -> None:
    ids = tok.encode(["the ☃ cat", "中文", ""])
    assert UNK_ID in ids[0] and UNK_ID in ids[1] and ids[2] == []
    out = tok.decode(ids)
    assert "the" in out[0] and "cat" in out[0] and "☃" not in out[0]
    assert isinstance(out[1], str) and out[2] == ""


@pytest.mark.parametrize("model_type", ["unigram", "bpe", "char", "word"])
def test_model_types_round_trip(lines: list[str], model_type: str) -> None:
    tok = train_tokenizer(lines, vocab_size=80, model_type=model_type)
    assert tok.decode(tok.encode(lines[:10])) == lines[:10]


def test_hard_vocab_limit_off_allows_too_large_vocab() -> None:
    tok = train_tokenizer(synthetic_lines(200), vocab_size=8000)
    assert tok.vocab_size < 8000


def test_training_is_silent(capfd: pytest.CaptureFixture[str], lines: list[str]) -> None:
    tok = train_tokenizer(lines, vocab_size=60)
    tok.decode(tok.encode(lines[:5]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_training_is_deterministic(lines: list[str]) -> None:
    a = train_tokenizer(lines, vocab_size=60, threads=2)
    b = train_tokenizer(lines, vocab_size=60, threads=2)
    assert a.model_bytes == b.model_bytes
    # The thread count is recorded in the bytes but does not change the vocabulary.
    c = train_tokenizer(lines, vocab_size=60, threads=1)
    assert a.pieces(range(a.vocab_size)) == c.pieces(range(c.vocab_size))


def test_training_errors() -> None:
    with pytest.raises(Seq2SeqError, match="no text"):
        train_tokenizer([], vocab_size=50)
    with pytest.raises(Seq2SeqError, match="no text"):
        train_tokenizer(["  ", ""], vocab_size=50)
    with pytest.raises(Seq2SeqError, match="model_type"):
        train_tokenizer(["a b"], vocab_size=50, model_type="wordpiece")
    with pytest.raises(Seq2SeqError, match="vocab_size=5"):
        train_tokenizer(synthetic_lines(50), vocab_size=5)


def test_bytes_round_trip(tok: Tokenizer, lines: list[str]) -> None:
    copy = Tokenizer(tok.model_bytes)
    assert copy.model_bytes == tok.model_bytes
    assert copy.encode(lines[:10]) == tok.encode(lines[:10])


def test_save_load_round_trip(tok: Tokenizer, tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "sub" / "src.model"
    tok.save(path)
    tok.save(path)  # overwriting is fine
    assert [p.name for p in path.parent.iterdir()] == ["src.model"]  # no temp file left
    loaded = Tokenizer.load(path)
    assert loaded.model_bytes == tok.model_bytes
    assert loaded.encode(lines[:10]) == tok.encode(lines[:10])


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x08\x01"])
def test_invalid_bytes(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="SentencePiece model"):
        Tokenizer(data)
    path = tmp_path / "bad.model"
    path.write_bytes(data)
    with pytest.raises(Seq2SeqError, match="bad.model"):
        Tokenizer.load(path)


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="missing.model"):
        Tokenizer.load(tmp_path / "missing.model")
    with pytest.raises(Seq2SeqError, match=str(tmp_path.name)):
        Tokenizer.load(tmp_path)  # a directory


def test_save_to_unwritable_place(tok: Tokenizer, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Seq2SeqError, match="cannot write tokenizer"):
        tok.save(blocker / "src.model")
