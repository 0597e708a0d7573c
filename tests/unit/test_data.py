"""Data: reading and validating parallel text, encoding, batches, bucketing, sharding."""

import random
from pathlib import Path

import pytest
import torch

from seq2seq.data import (
    EncodedCorpus,
    ParallelText,
    encode_parallel,
    filter_long,
    looks_like_utf16,
    make_batch,
    make_source,
    padding_fraction,
    read_lines,
    read_parallel,
    shard,
    token_batches,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_tokenizer

PAD, BOS, EOS = PAD_ID, BOS_ID, EOS_ID


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    words = "the a cat dog sat on mat red blue house car der die das hund katze".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) for _ in range(200)]
    return train_tokenizer(lines, vocab_size=50)


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------- reading


def test_read_lines_lf_crlf_bom_and_whitespace(tmp_path: Path) -> None:
    assert read_lines(write(tmp_path / "lf", "a b\n  c  \n\nd")) == ["a b", "  c  ", "", "d"]
    assert read_lines(write(tmp_path / "crlf", "a b\r\n  c \r\n")) == ["a b", "  c "]
    assert read_lines(write(tmp_path / "bom", "\ufeffhallo\nwelt\n")) == ["hallo", "welt"]
    assert read_lines(write(tmp_path / "empty", "")) == []
    assert read_lines(write(tmp_path / "blank", "\n")) == [""]
    # Only "\n" ends a line: U+2028 and form feed stay inside it, keeping files aligned.
    assert read_lines(write(tmp_path / "sep", "a\u2028b\x0cc\n")) == ["a\u2028b\x0cc"]


def test_read_lines_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="not found.*nope.txt"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(Seq2SeqError, match="cannot read"):
        read_lines(tmp_path)  # a directory


def test_read_lines_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.de", b"gut\nsehr gut\n" + "Grüße\n".encode("latin1"))
    with pytest.raises(Seq2SeqError, match=r"latin1\.de, line 3: invalid UTF-8"):
        read_lines(path)


def test_a_nul_in_a_short_utf8_line_is_not_taken_for_utf16(tmp_path: Path) -> None:
    assert not looks_like_utf16(b"a\0b\n", first=True)
    (tmp_path / "nul.txt").write_bytes(b"a\0b\n")
    assert read_lines(tmp_path / "nul.txt") == ["a\0b"]
    for text in ("ab", "the dog .\n"):  # UTF-16 without a byte-order mark is still found
        assert looks_like_utf16(text.encode("utf-16-le"), first=True)
        assert looks_like_utf16(text.encode("utf-16-be"), first=True)


def test_read_parallel_drops_and_counts_empty_pairs(tmp_path: Path) -> None:
    src = write(tmp_path / "src", "a\n\nb\n  \nc\r\n")
    tgt = write(tmp_path / "tgt", "x\ny\n\t\nz\nw\r\n")
    text = read_parallel(src, tgt)
    assert text == ParallelText(src=["a", "c"], tgt=["x", "w"], dropped_empty=3)


def test_read_parallel_mismatched_counts(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", "a\nb\nc\n")
    tgt = write(tmp_path / "train.de", "x\ny\n")
    with pytest.raises(Seq2SeqError, match=r"train\.de ends at line 2 but .*train\.en goes on: "
                                           r"line 3 is 'c'"):
        read_parallel(src, tgt)


def test_read_parallel_empty_files(tmp_path: Path) -> None:
    src, tgt = write(tmp_path / "a.en", ""), write(tmp_path / "a.de", "")
    with pytest.raises(Seq2SeqError, match=r"no sentence pairs in .*a\.en and .*a\.de"):
        read_parallel(src, tgt)
    src, tgt = write(tmp_path / "b.en", "x\n\n"), write(tmp_path / "b.de", "\ny\n")
    with pytest.raises(Seq2SeqError, match="no sentence pairs"):
        read_parallel(src, tgt)


# ---------------------------------------------------------------- encoding


def test_encode_parallel_matches_tokenizers(tok: Tokenizer) -> None:
    text = ParallelText(src=["the cat", "a dog"], tgt=["die katze", "der hund"], dropped_empty=0)
    corpus = encode_parallel(text, tok, tok)
    assert corpus == EncodedCorpus(src=tok.encode(text.src), tgt=tok.encode(text.tgt))


def test_filter_long() -> None:
    corpus = EncodedCorpus(src=[[5] * 3, [5] * 4, [5] * 2, []], tgt=[[6] * 3, [6], [6] * 5, [6]])
    kept, dropped = filter_long(corpus, max_len=3)
    assert dropped == 2
    assert kept == EncodedCorpus(src=[[5] * 3, []], tgt=[[6] * 3, [6]])


# ---------------------------------------------------------------- batches


def test_make_batch_shift_and_padding() -> None:
    batch = make_batch(
        src=[[10, 11, 12], [13]], tgt=[[20, 21], [22, 23, 24]], pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    assert batch.src.tolist() == [[10, 11, 12, EOS], [13, EOS, PAD, PAD]]
    assert batch.tgt_in.tolist() == [[BOS, 20, 21, PAD], [BOS, 22, 23, 24]]
    assert batch.tgt_out.tolist() == [[20, 21, EOS, PAD], [22, 23, 24, EOS]]
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long
    assert batch.n_tokens == 7


def test_make_batch_masks() -> None:
    batch = make_batch(
        src=[[10, 11, 12], [13]], tgt=[[20], [22, 23, 24]], pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    assert batch.src_mask.shape == (2, 1, 1, 4) and batch.src_mask.dtype == torch.bool
    assert batch.src_mask[:, 0, 0].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.tgt_mask.shape == (2, 1, 4, 4) and batch.tgt_mask.dtype == torch.bool
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(batch.tgt_mask[1, 0], causal)
    # Sentence 0 has tgt_in [BOS, 20, PAD, PAD]: no query may look at the padding.
    assert torch.equal(batch.tgt_mask[0, 0], causal & torch.tensor([True, True, False, False]))


def test_make_source_and_batch_to() -> None:
    src, mask = make_source([[7, 8], [9, 10, 11]], pad_id=PAD, eos_id=EOS)
    assert src.tolist() == [[7, 8, EOS, PAD], [9, 10, 11, EOS]]
    assert mask.shape == (2, 1, 1, 4)
    empty, empty_mask = make_source([], pad_id=PAD, eos_id=EOS)
    assert empty.shape == (0, 0) and empty_mask.shape == (0, 1, 1, 0)
    batch = make_batch([[7]], [[8]], PAD, BOS, EOS).to(torch.device("cpu"))
    assert batch.tgt_out.tolist() == [[8, EOS]] and batch.n_tokens == 2


# ---------------------------------------------------------------- bucketing and sharding


def test_token_batches_respect_budget_and_cover_all() -> None:
    rng = random.Random(1)
    src_lens = [rng.randint(1, 30) for _ in range(500)]
    tgt_lens = [rng.randint(1, 30) for _ in range(500)]
    batches = token_batches(src_lens, tgt_lens, max_tokens=200, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) * (max(max(src_lens[i], tgt_lens[i]) for i in b) + 1) <= 200
    assert padding_fraction(batches, src_lens, tgt_lens) < 0.4


def test_token_batches_deterministic_per_epoch() -> None:
    lens = [5, 5, 5, 5, 7, 7, 9, 9, 2, 2] * 10
    a = token_batches(lens, lens, max_tokens=32, seed=3, epoch=1)
    assert a == token_batches(lens, lens, max_tokens=32, seed=3, epoch=1)
    assert a != token_batches(lens, lens, max_tokens=32, seed=3, epoch=2)
    ordered = token_batches(lens, lens, max_tokens=32, seed=3, epoch=1, shuffle=False)
    widths = [max(lens[i] for i in b) for b in ordered]
    assert widths == sorted(widths)


def test_token_batches_oversized_pair_alone() -> None:
    batches = token_batches([2, 50, 2], [2, 3, 2], max_tokens=10, seed=0, epoch=0, shuffle=False)
    assert batches == [[0, 2], [1]] or batches == [[2, 0], [1]]


def test_shard_disjoint_equal_counts() -> None:
    batches = [[i] for i in range(11)]
    shards = [shard(batches, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    flat = [i for s in shards for b in s for i in b]
    assert len(flat) == len(set(flat)) == 9
    assert shard(batches, 0, 1) == batches
    with pytest.raises(ValueError):
        shard(batches, 3, 3)


def test_padding_fraction_exact() -> None:
    # One batch: src widths 2+1, 4+1 -> S = 5; tgt 1+1, 3+1 -> T = 4.  Real: 3+5+2+4 = 14 of 18.
    assert padding_fraction([[0, 1]], [2, 4], [1, 3]) == pytest.approx(1 - 14 / 18)
    assert padding_fraction([], [], []) == 0.0


def test_token_batches_pad_little_when_the_sides_differ_in_length() -> None:
    rng = random.Random(2)
    src_lens = [rng.randint(3, 30) for _ in range(4000)]
    tgt_lens = [max(1, n + rng.randint(-6, 6)) for n in src_lens]  # correlated, not equal
    batches = token_batches(src_lens, tgt_lens, max_tokens=1000, seed=0, epoch=0)
    assert padding_fraction(batches, src_lens, tgt_lens) < 0.08  # 0.085 by (tgt_len, src_len)
