"""The decoder's key/value cache: preallocated buffers, row selection, beam forks."""

import torch

from seq2seq.model.attention import LayerCache
from seq2seq.search import _slots


def kv(batch: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, steps, 4, generator=g), torch.randn(batch, 2, steps, 4,
                                                                      generator=g)


def test_appends_fill_a_preallocated_buffer_and_return_the_prefix():
    cache, ks, vs = LayerCache(capacity=8), [], []
    for t in range(5):
        k, v = kv(3, 1, t)
        ks.append(k), vs.append(v)
        all_k, all_v = cache.append(k, v)
        assert torch.equal(all_k, torch.cat(ks, dim=2)) and torch.equal(all_v, torch.cat(vs, 2))
    assert cache.self_k.size(2) == 8 and cache.length == 5  # no reallocation while it fits


def test_outgrowing_the_capacity_keeps_every_position():
    cache, ks = LayerCache(capacity=2), []
    for t in range(40):
        k, v = kv(2, 1, t)
        ks.append(k)
        all_k, _ = cache.append(k, v)
    assert torch.equal(all_k, torch.cat(ks, dim=2)) and cache.self_k.size(2) >= 40


def test_select_keeps_rows_and_copy_rows_forks_them():
    cache = LayerCache()
    k, v = kv(4, 3, 0)
    cache.append(k, v)
    cache.cross_k, cache.cross_v = kv(4, 5, 1)
    cross_before = cache.cross_k.clone()
    cache.copy_rows(torch.tensor([0, 0]), torch.tensor([2, 3]))  # beam 0 forks into 2 and 3
    expected = k[[0, 1, 0, 0]]
    assert torch.equal(cache.self_k[:, :, :3], expected)
    assert torch.equal(cache.cross_k, cross_before)  # a sentence's beams share these
    cache.select(torch.tensor([3, 1]))
    assert torch.equal(cache.self_k[:, :, :3], expected[[3, 1]])
    assert torch.equal(cache.cross_k, cross_before[[3, 1]])
    all_k, _ = cache.append(*kv(2, 1, 5))  # appending after a select still works
    assert torch.equal(all_k[:, :, :3], expected[[3, 1]]) and all_k.size(2) == 4


def test_slots_are_a_permutation_and_copy_only_forked_beams():
    parent = torch.tensor([[0, 1, 2, 3],  # each beam extended once: nothing moves
                           [2, 2, 2, 2],  # one beam extended four times
                           [3, 0, 3, 1],
                           [1, 1, 0, 0]])
    slots = _slots(parent)
    for row, p in zip(slots.tolist(), parent.tolist(), strict=True):
        assert sorted(row) == list(range(4))
        moved = sum(s != q for s, q in zip(row, p, strict=True))
        assert moved == 4 - len(set(p))  # only children beyond a parent's first
        for j, q in enumerate(p):
            if q not in p[:j]:
                assert row[j] == q  # a first child stays in its parent's row
    assert slots[0].tolist() == [0, 1, 2, 3]


def test_selecting_rows_keeps_the_cross_rows_a_beam_search_names():
    cache = LayerCache(capacity=4)
    k, v = kv(6, 2, 0)  # 3 sentences x 2 beams
    cache.append(k, v)
    cache.cross_k, cache.cross_v = kv(3, 5, 1)  # one row per sentence
    cross_k = cache.cross_k.clone()
    cache.select(torch.tensor([2, 3, 4, 5]), torch.tensor([1, 2]))  # sentence 0 is done
    assert torch.equal(cache.self_k[:, :, :2], k[2:])
    assert torch.equal(cache.cross_k, cross_k[1:])
