"""The token store: exact round trip, rebuilt on any change, never used half-built; and the
vectorised batching and corpus weights training draws from it with."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data import TrainSet, length_batches, token_batches
from seq2seq.errors import Seq2SeqError
from seq2seq.store import build_store, built_from, open_store
from seq2seq.tokenizer import Tokenizer, train_tokenizer
from tests.conftest import ROOT

MAX_LEN = 12
WORDS = "the a cat dog sat on mat red blue house car der die das hund katze".split()


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) for _ in range(200)]
    return train_tokenizer(lines, vocab_size=50)


def corpus(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """n pairs, some with an empty side and some longer than MAX_LEN tokens."""
    rng = random.Random(seed)
    def line():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
    pairs = [(line(), line()) for _ in range(n)]
    pairs[3], pairs[7] = ("", pairs[7][1]), (pairs[7][0], "   ")
    return pairs


def wanted(tok: Tokenizer, files: str = "a", mtime_ns: int = 5) -> dict:
    inputs = [{"name": files, "files": [{"path": files, "size": 1, "mtime_ns": mtime_ns,
                                         "sha256": files}]}]
    return built_from(tok, tok, inputs, MAX_LEN)


def build(folder: Path, tok: Tokenizer, corpora, **kwargs):
    return build_store(folder, corpora, tok, tok, MAX_LEN, wanted(tok), log=lambda _: None,
                       **kwargs)


def expected(tok: Tokenizer, pairs):
    """The reference: drop empty sides, encode, drop pairs over MAX_LEN tokens."""
    kept = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    src, tgt = tok.encode([s for s, _ in kept]), tok.encode([t for _, t in kept])
    keep = [i for i in range(len(kept)) if len(src[i]) <= MAX_LEN and len(tgt[i]) <= MAX_LEN]
    return [src[i] for i in keep], [tgt[i] for i in keep], len(kept) - len(keep)


# ---------------------------------------------------------------- the store


def test_the_store_round_trips_exactly_in_one_process_and_over_a_pool(tok, tmp_path):
    a, b = corpus(300), corpus(120, seed=2)
    store, counts = build(tmp_path / "one", tok, [("a", iter(a)), ("b", iter(b))], workers=1)
    src, tgt, too_long = expected(tok, a + b)
    assert too_long > 0 and counts.empty == 2 * 2 and counts.too_long == too_long
    assert store.pairs(np.arange(len(store))) == (src, tgt)
    n_a = len(expected(tok, a)[0])
    assert store.corpora == [("a", 0, n_a), ("b", n_a, len(src))]
    assert store.ids["src"].dtype == np.uint8  # 50 pieces fit a byte
    assert store.lens["tgt"].tolist() == [len(t) for t in tgt]
    # Four processes, chunks of 7 pairs: the same bytes on disk.
    pooled, _ = build(tmp_path / "pool", tok, [("a", iter(a)), ("b", iter(b))], workers=4,
                      chunk=7)
    for name in ("src.ids", "tgt.ids", "src.offsets", "tgt.offsets", "src.lens", "tgt.lens"):
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    reopened, why = open_store(tmp_path / "one", wanted(tok))
    assert reopened is not None, why
    assert reopened.pairs(np.array([0, 5, 2])) == store.pairs(np.array([0, 5, 2]))


def test_a_store_is_used_only_for_its_own_inputs_tokenizer_and_max_len(tok, tmp_path):
    build(tmp_path / "s", tok, [("a", iter(corpus(50)))])
    assert open_store(tmp_path / "s", wanted(tok))[0] is not None
    other = train_tokenizer([" ".join(WORDS)] * 20, vocab_size=30)
    assert open_store(tmp_path / "s", wanted(tok, mtime_ns=6))[0] is not None  # a touch
    for changed, why in ((wanted(tok, "b"), "the training text b changed"),
                         (wanted(other), "the tokenizer changed"),
                         ({**wanted(tok), "max_len": 64}, "data.max_len changed (12 -> 64)"),
                         ({**wanted(tok), "format": 0}, "format")):
        store, reason = open_store(tmp_path / "s", changed)
        assert store is None and why in reason


def test_a_store_killed_mid_build_is_never_used(tok, tmp_path):
    folder = tmp_path / "store"
    build(folder, tok, [("a", iter(corpus(40)))])
    before = (folder / "src.ids").read_bytes()

    def breaks():
        yield from corpus(30)
        raise Seq2SeqError("train.src, line 31: invalid UTF-8")

    with pytest.raises(Seq2SeqError, match="line 31"):
        build(folder, tok, [("a", breaks())], chunk=8)
    assert (folder / "src.ids").read_bytes() == before  # the old store stands, whole
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no half-built folder left
    # A kill leaves its hidden folder (no manifest yet): never opened, swept by a build.
    torn = tmp_path / ".store-k1ll3d.tmp"
    torn.mkdir()
    (torn / "src.ids").write_bytes(b"\x01\x02")
    build(folder, tok, [("a", iter(corpus(40)))])
    assert not torn.exists()
    with open(folder / "tgt.ids", "r+b") as f:  # a store cut short on disk
        f.truncate(3)
    store, why = open_store(folder, wanted(tok))
    assert store is None and "tgt.ids holds 3 bytes" in why


KILLED_BUILD = """
import sys, time
from pathlib import Path
from seq2seq.store import build_store, built_from
from seq2seq.tokenizer import Tokenizer
tok = Tokenizer(Path(sys.argv[2]).read_bytes())
def slow():
    for i in range(10**6):
        if i == 50:
            print("writing", flush=True)
            time.sleep(60)
        yield "the cat sat", "der hund"
build_store(Path(sys.argv[1]), [("a", slow())], tok, tok, 12, built_from(tok, tok, [], 12),
            print, chunk=10, workers=1)
"""


def test_a_build_killed_with_sigkill_leaves_nothing_that_opens(tok, tmp_path):
    (tmp_path / "spm.model").write_bytes(tok.model_bytes)
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "store"),
                              str(tmp_path / "spm.model")], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "writing"
        time.sleep(0.2)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".store-")]
    assert len(leftovers) == 1 and not (tmp_path / "store").exists(), leftovers
    assert open_store(tmp_path / "store", built_from(tok, tok, [], 12)) == (None,
                                                                           "there is none yet")


def mapped_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):  # a mapping's first line
            inside = len(head) > 5 and head[5] == str(path)  # anonymous ones have no path
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux /proc")
def test_reading_pairs_leaves_no_store_page_mapped(tok, tmp_path):
    pairs = corpus(12000)
    store, _ = build(tmp_path / "s", tok, [("a", iter(pairs))])
    ids = (tmp_path / "s" / "src.ids").resolve()
    assert ids.stat().st_size > 8 * 4096  # several pages
    everything = np.arange(len(store))
    store.release()
    assert mapped_kib(ids) == 0
    np.asarray(store.ids["src"]).sum()  # reading maps the pages, also after a release
    assert mapped_kib(ids) > 0
    assert store.pairs(everything) == expected(tok, pairs)[:2]
    assert mapped_kib(ids) == 0  # every page read was handed back
    assert store.pairs(everything[:5]) == tuple(side[:5] for side in expected(tok, pairs)[:2])


def test_a_corpus_with_nothing_left_is_one_clear_error(tok, tmp_path):
    with pytest.raises(Seq2SeqError, match="no training pairs left: of 2 read, 1 have an empty "
                                           "side and 1 are longer than data.max_len=12"):
        build(tmp_path / "s", tok, [("a", iter([("", "x"), (" ".join(WORDS), "cat")]))])
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- batching from lengths


LENS = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=300)


@settings(max_examples=60, deadline=None)
@given(pairs=LENS, max_tokens=st.integers(1, 400), seed=st.integers(0, 2**32),
       epoch=st.integers(0, 50), shuffle=st.booleans())
def test_length_batches_are_token_batches(pairs, max_tokens, seed, epoch, shuffle):
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    vectorised = length_batches(np.array(src, dtype=np.uint8), np.array(tgt, dtype=np.uint16),
                                max_tokens, seed, epoch, shuffle)
    assert [b.tolist() for b in vectorised] == token_batches(src, tgt, max_tokens, seed, epoch,
                                                             shuffle)


class FakeStore:
    """What TrainSet reads of a store: lengths and the corpora's ranges."""

    def __init__(self, sizes: list[int], lens: int = 5):
        bounds = np.cumsum([0, *sizes])
        self.corpora = [(f"c{i}", int(a), int(b)) for i, (a, b) in
                        enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
        n = int(bounds[-1])
        self.lens = {"src": np.full(n, lens), "tgt": np.arange(n) % 20}

    def __len__(self) -> int:
        return self.corpora[-1][2]


def test_equal_weights_give_every_kept_pair_once_in_order():
    train = TrainSet(FakeStore([30, 70]), weights=(2.0, 2.0))
    assert train.epoch_items(seed=1, epoch=0).tolist() == list(range(100))
    fitted, dropped = train.within(9)  # target lengths 10..19 go
    assert dropped == 50 and len(fitted) == 50
    assert fitted.epoch_items(1, 0).tolist() == [i for i in range(100) if i % 20 < 10]


def test_weights_draw_each_corpus_in_proportion_seeded_per_epoch():
    train = TrainSet(FakeStore([100, 1000]), weights=(5.0, 1.0))
    items = train.epoch_items(seed=3, epoch=0)
    small = items[items < 100]
    # N = 1100 pairs; the small corpus gets 1100 * 500 / 1500 = 367: all 100 three times,
    # and 67 more, each once.
    assert len(items) == 1100 and len(small) == 367
    assert np.bincount(small, minlength=100).tolist().count(4) == 67
    large = items[items >= 100]
    assert len(large) == 733 and len(np.unique(large)) == 733  # a sample, without repeats
    assert np.array_equal(items, train.epoch_items(seed=3, epoch=0))
    assert not np.array_equal(items, train.epoch_items(seed=3, epoch=1))
