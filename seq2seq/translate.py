"""Translator: text in, text out, batched; rebuilt from a checkpoint (or several, an
ensemble) alone. Beside the best translation it gives n-best lists, samples, and the
scores of given translations (forced decoding)."""

import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint, rebuild, resolve_checkpoint
from seq2seq.config import DecodeConfig
from seq2seq.data import Batch, make_batch, make_source
from seq2seq.ensemble import Ensemble
from seq2seq.errors import Seq2SeqError
from seq2seq.model.transformer import Transformer
from seq2seq.runtime import resolve_device
from seq2seq.sampling import sample_search
from seq2seq.search import (
    Hypothesis,
    beam_search,
    cross_attention,
    forced_log_probs,
    greedy_search,
    length_limits,
    max_output_lengths,
    prefix_tensor,
)
from seq2seq.tokenizer import Tokenizer
from seq2seq.translation import (
    PairScore,
    Search,
    Translation,
    as_lines,
    check_nbest,
    check_sampling,
    report_unknown,
)

SHOWN_LINES = 5  # line numbers a warning names before "..."


class Translator:
    """Translate sentences with a trained model, or an ensemble (seq2seq/ensemble.py): text
    in, text out, batched; also n-best lists, samples and scores of given translations.

    >>> t = Translator.from_checkpoint("runs/toy/best.pt")
    >>> t.translate("the big dog sees two cats .")  # a string in, a string out
    >>> t.translate(["a line .", "another line ."], beam_size=5)  # a list: one output each

    Options left as None take the checkpoint's `decode` section. Input the model cannot
    read whole is translated anyway and reported on stderr: sentences longer than its
    positions (cut), characters its tokenizer has no piece for (read as <unk>).
    """

    def __init__(self, model: Transformer | Ensemble, src_tok: Tokenizer, tgt_tok: Tokenizer,
                 decode: DecodeConfig, device: torch.device):
        """model: in eval mode on `device`; src_tok, tgt_tok: its tokenizers (the same
        object for a joint vocabulary); decode: the defaults for every option."""
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.decode, self.device = decode, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> "Translator":
        """Rebuild the model, its tokenizers and decode settings from a checkpoint alone.

        path: a *.pt file written by `seq2seq train`, or a run directory (its best.pt).
        device: "auto" (CUDA when there is one), "cpu", "cuda" or "cuda:N".
        Raises Seq2SeqError for a missing, damaged or foreign file.
        """
        dev = resolve_device(device)
        path = resolve_checkpoint(path)
        model, src_tok, tgt_tok, config = rebuild(load_checkpoint(path), dev, str(path))
        return cls(model, src_tok, tgt_tok, config.decode, dev)

    @classmethod
    def from_checkpoints(cls, paths: list[str | Path], device: str = "auto") -> "Translator":
        """One checkpoint, or an ensemble of several with the same tokenizers; the decode
        settings are the first one's."""
        if len(paths) == 1:
            return cls.from_checkpoint(paths[0], device)
        first = cls.from_checkpoint(paths[0], device)
        models = [first.model]
        for path in paths[1:]:
            other = cls.from_checkpoint(path, device)
            for side, a, b in (("src", first.src_tok, other.src_tok),
                               ("tgt", first.tgt_tok, other.tgt_tok)):
                if a.model_bytes != b.model_bytes:
                    raise Seq2SeqError(f"{path} has another {side} vocabulary than {paths[0]}; "
                                       "an ensemble needs checkpoints trained with the same "
                                       "tokenizers")
            models.append(other.model)
        return cls(Ensemble(models), first.src_tok, first.tgt_tok, first.decode, first.device)

    def translate(self, sentences: str | list[str], beam_size: int | None = None,
                  length_penalty: float | None = None, max_len_ratio: float | None = None,
                  batch_size: int | None = None, first_line: int = 1) -> str | list[str]:
        """Translate one sentence (a str gives a str) or a list of them (one output each).

        sentences: a string, or a list (or tuple) of strings; a blank one gives "".
        beam_size: 1 is greedy search; length_penalty: GNMT alpha; max_len_ratio: output
        tokens <= ratio * source tokens + 10; batch_size: sentences per batch.
        first_line: the number of the first sentence in warnings about cut lines.
        Raises TypeError for anything else (a bare iterator, bytes, numbers), and
        Seq2SeqError for an option out of range.
        """
        lines, single = as_lines(sentences)
        beam, alpha, ratio, size = self.options(beam_size, length_penalty, max_len_ratio,
                                                batch_size)
        ids = self.encode(lines, first_line)
        tokens = self.translate_ids(ids, beam, alpha, ratio, size)
        outputs = self.tgt_tok.decode(tokens)
        outputs = [out if sent.strip() else "" for sent, out in zip(lines, outputs, strict=True)]
        return outputs[0] if single else outputs

    def encode(self, lines: list[str], first_line: int = 1) -> list[list[int]]:
        """Source token ids per line, cut to the model's positions; lossy input is reported
        on stderr: cut lines by number (counting from `first_line`), <unk> characters."""
        ids = self.src_tok.encode(lines)
        report_unknown(self.src_tok, lines, ids)
        return self._truncate(ids, first_line)

    def nbest(self, sentences: list[str], n: int = 1, beam_size: int | None = None,
              length_penalty: float | None = None, max_len_ratio: float | None = None,
              batch_size: int | None = None, prefixes: list[str] | None = None,
              token_scores: bool = False, alignment_layer: int | None = None,
              first_line: int = 1) -> list[list[Translation]]:
        """The n (<= beam size) best translations of each sentence, best first.

        Beam search keeps these lists anyway, so they cost nothing extra; n 1 gives what
        translate() gives. prefixes: one target text per sentence ("" for none) that each
        translation must begin with. token_scores adds per-token log-probabilities,
        alignment_layer (a decoder layer, -1 the last) the cross-attention alignment; both
        come from one extra teacher-forced pass. An empty sentence gives one empty
        translation. Options left as None take the checkpoint's decode config.
        """
        beam, alpha, ratio, size = self.options(beam_size, length_penalty, max_len_ratio,
                                                batch_size)
        check_nbest(n, beam)
        return self._translations(sentences, prefixes, ratio, size, self._beam(beam, alpha, n),
                                  f"with beam size {beam}", token_scores, alignment_layer,
                                  first_line)

    def sample(self, sentences: list[str], n: int = 1, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, seed: int = 0,
               generator: torch.Generator | None = None, length_penalty: float | None = None,
               max_len_ratio: float | None = None, batch_size: int | None = None,
               prefixes: list[str] | None = None, token_scores: bool = False,
               alignment_layer: int | None = None, first_line: int = 1
               ) -> list[list[Translation]]:
        """n independent samples of each sentence, in the order drawn (back-translation).

        Each token is drawn from softmax(log-probs / temperature), kept to the top_k most
        probable tokens (0: all) and the smallest set reaching probability top_p. The
        draws use `generator` alone (on the translator's device; made from `seed` when
        None; pass one generator to calls that should continue one random stream), so the
        same seed, sentences and batch size give the same samples. log_prob and score are
        the model's own, as score() gives them. Other arguments as for nbest().
        """
        sampling = check_sampling(n, temperature, top_k, top_p)
        _, alpha, ratio, size = self.options(1, length_penalty, max_len_ratio, batch_size)
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        bos, eos = self.tgt_tok.bos_id, self.tgt_tok.eos_id

        def search(src, src_mask, max_lens, prefix):
            return sample_search(self.model, src, src_mask, bos, eos, max_lens, sampling,
                                 generator, n, prefix, alpha).nbest

        return self._translations(sentences, prefixes, ratio, size, search,
                                  f"with {n} samples each", token_scores, alignment_layer,
                                  first_line)

    def score(self, sources: list[str], targets: list[str], batch_size: int | None = None
              ) -> list[PairScore]:
        """The model's log-probability of each target given its source (forced decoding),
        batched; what search's log_prob is for its own output. EOS is scored too.

        Sources longer than the model's positions are truncated (with a warning); a
        target that long is an error, as its score would be a truncated one.
        """
        if len(sources) != len(targets):
            raise Seq2SeqError(f"{len(sources)} sources but {len(targets)} targets; scoring "
                               "needs one target per source")
        _, _, _, size = self.options(1, None, None, batch_size)
        src_ids = self.encode(list(sources))
        tgt_ids = self.tgt_tok.encode(list(targets))
        limit = self.model.max_positions - 1  # room for BOS
        for line, ids in enumerate(tgt_ids, 1):
            if len(ids) > limit:
                raise Seq2SeqError(f"target {line} has {len(ids)} tokens, over the model's "
                                   f"limit of {limit}; drop or split that pair")
        per_token = self._forced(src_ids, tgt_ids, size)
        return [PairScore(sum(p), len(p), p) for p in per_token]

    def options(self, beam_size: int | None = None, length_penalty: float | None = None,
                max_len_ratio: float | None = None, batch_size: int | None = None
                ) -> tuple[int, float, float, int]:
        """(beam, alpha, ratio, batch size), None taken from the checkpoint, checked up front
        so that a bad value fails before any input is read or output written."""
        d = self.decode
        beam = d.beam_size if beam_size is None else beam_size
        alpha = d.length_penalty if length_penalty is None else length_penalty
        ratio = d.max_len_ratio if max_len_ratio is None else max_len_ratio
        size = d.batch_size if batch_size is None else batch_size
        vocab = self.tgt_tok.vocab_size
        if not 1 <= beam <= vocab:  # more beams than target pieces cannot differ
            raise Seq2SeqError(f"beam size must be between 1 and the target vocabulary size "
                               f"({vocab}), got {beam}")
        if size < 1:
            raise Seq2SeqError(f"batch size must be >= 1, got {size}")
        if not (math.isfinite(ratio) and ratio > 0):
            raise Seq2SeqError(f"max-len-ratio must be a finite number > 0, got {ratio}")
        if not (math.isfinite(alpha) and 0 <= alpha <= 10):  # decode.length_penalty's range
            raise Seq2SeqError(f"length penalty must be a finite number in [0, 10], got {alpha}")
        return beam, alpha, ratio, size

    def alignment_layers(self) -> int:
        """How many decoder layers have cross-attention to align with (0: none)."""
        b = make_batch([[self.src_tok.unk_id]], [[]], self.src_tok.pad_id, self.tgt_tok.bos_id,
                       self.tgt_tok.eos_id).to(self.device)  # one token each way
        return len(cross_attention(self._aligner(), b.src, b.src_mask, b.tgt_in, b.tgt_mask))

    def _truncate(self, ids: list[list[int]], first_line: int = 1) -> list[list[int]]:
        limit = self.model.max_positions - 1  # room for EOS
        long = [first_line + i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            shown = ", ".join(map(str, long[:SHOWN_LINES]))
            shown = f"line{'s' * (len(long) > 1)} {shown}{', ...' * (len(long) > SHOWN_LINES)}"
            print(f"warning: {len(long)} sentence(s) longer than the model's {limit} tokens "
                  f"were cut to fit ({shown})", file=sys.stderr)
        return [x[:limit] for x in ids]

    @torch.no_grad()
    def translate_ids(self, ids: list[list[int]], beam_size: int, alpha: float, ratio: float,
                      batch_size: int) -> list[list[int]]:
        """Token ids in, token ids out; sorted by length for dense batches, returned in order."""
        hyps = self._hypotheses(ids, None, ratio, batch_size, self._beam(beam_size, alpha, 1),
                                f"with beam size {beam_size}")
        return [h[0].tokens if h else [] for h in hyps]

    def _beam(self, beam_size: int, alpha: float, n: int) -> Search:
        """Greedy search for beam size 1, else beam search keeping n-best lists of n."""
        bos, eos = self.tgt_tok.bos_id, self.tgt_tok.eos_id

        def search(src, src_mask, max_lens, prefix):
            if beam_size == 1:
                return greedy_search(self.model, src, src_mask, bos, eos, max_lens, prefix,
                                     alpha).nbest
            return beam_search(self.model, src, src_mask, bos, eos, max_lens, beam_size, alpha,
                               prefix, n).nbest

        return search

    def _translations(self, sentences: list[str], prefixes: list[str] | None, ratio: float,
                      batch_size: int, search: Search, what: str, token_scores: bool,
                      alignment_layer: int | None, first_line: int = 1
                      ) -> list[list[Translation]]:
        """Encode, check, search in batches, and turn hypotheses into Translations."""
        if prefixes is not None and len(prefixes) != len(sentences):
            raise Seq2SeqError(f"{len(prefixes)} prefixes for {len(sentences)} sentences; give "
                               "one per sentence")
        if alignment_layer is not None:
            self.check_alignment_layer(alignment_layer)
        ids = self.encode(list(sentences), first_line)
        ids = [x if s.strip() else [] for x, s in zip(ids, sentences, strict=True)]  # as translate
        prefix_ids = None if prefixes is None else self._prefix_ids(prefixes, ids, ratio)
        hyps = self._hypotheses(ids, prefix_ids, ratio, batch_size, search, what)
        flat = [(i, h) for i, group in enumerate(hyps) for h in group]
        srcs, tgts = [ids[i] for i, _ in flat], [h.tokens for _, h in flat]
        texts = self.tgt_tok.decode(tgts)
        items = [Translation(text, h.tokens, h.log_prob, h.score, h.eos)
                 for (_, h), text in zip(flat, texts, strict=True)]
        if token_scores:  # search's own sums; EOS's term only where it chose EOS
            for t, p in zip(items, self._forced(srcs, tgts, batch_size), strict=True):
                t.token_log_probs = p if t.eos else p[:-1]
        if alignment_layer is not None:
            for t, a in zip(items, self._align(srcs, tgts, alignment_layer, batch_size),
                            strict=True):
                t.alignment = a
        out: list[list[Translation]] = [[] for _ in sentences]
        for (i, _), t in zip(flat, items, strict=True):
            out[i].append(t)
        empty = Translation("", [], 0.0, 0.0, False, [] if token_scores else None,
                            [] if alignment_layer is not None else None)
        return [group or [empty] for group in out]

    def _prefix_ids(self, prefixes: list[str], ids: list[list[int]], ratio: float
                    ) -> list[list[int]]:
        """Each prefix's target ids, refused where longer than its sentence's output limit."""
        prefix_ids = self.tgt_tok.encode(list(prefixes))
        lengths = torch.tensor([len(x) + 1 for x in ids])  # + EOS, as search counts them
        limits = length_limits(lengths, ratio, self.model.max_positions).tolist()
        for line, (p, src, limit) in enumerate(zip(prefix_ids, ids, limits, strict=True), 1):
            if src and len(p) > limit:
                raise Seq2SeqError(f"the prefix of sentence {line} has {len(p)} tokens, over its "
                                   f"output limit of {limit} (max-len-ratio x source tokens + "
                                   "10, within the model's positions); shorten the prefix or "
                                   "raise --max-len-ratio")
        return prefix_ids

    def _hypotheses(self, ids: list[list[int]], prefix_ids: list[list[int]] | None,
                    ratio: float, batch_size: int, search: Search, what: str
                    ) -> list[list[Hypothesis]]:
        """search() over length-sorted batches of the non-empty sentences; in input order,
        [] for an empty sentence."""
        tok = self.src_tok
        results: list[list[Hypothesis]] = [[] for _ in ids]
        for chunk in _length_batches([len(x) for x in ids], batch_size, skip_empty=True):
            src, src_mask = make_source([ids[i] for i in chunk], tok.pad_id, tok.eos_id)
            src, src_mask = src.to(self.device), src_mask.to(self.device)
            max_lens = max_output_lengths(src_mask, ratio, self.model.max_positions)
            prefix = None if prefix_ids is None else prefix_tensor(
                [prefix_ids[i] for i in chunk], self.device)
            with self._memory_guard(f"translating {len(chunk)} sentences {what}"):
                found = search(src, src_mask, max_lens, prefix)
            for i, hyps in zip(chunk, found, strict=True):
                results[i] = hyps
        return results

    def _forced(self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int
                ) -> list[list[float]]:
        """Each target's per-token log-probabilities (EOS last), in batches by length."""
        results: list[list[float]] = [[] for _ in tgt_ids]
        for chunk, b in self._pairs(src_ids, tgt_ids, batch_size):
            with self._memory_guard(f"scoring {len(chunk)} sentences"):
                logp = forced_log_probs(self.model, b.src, b.src_mask, b.tgt_in, b.tgt_out,
                                        b.tgt_mask, self.tgt_tok.bos_id).tolist()  # (B, T)
            for i, row in zip(chunk, logp, strict=True):
                results[i] = row[: len(tgt_ids[i]) + 1]
        return results

    def _align(self, src_ids: list[list[int]], tgt_ids: list[list[int]], layer: int,
               batch_size: int) -> list[list[int]]:
        """Per target token, the source token (no EOS) with the most cross-attention."""
        results: list[list[int]] = [[] for _ in tgt_ids]
        for chunk, b in self._pairs(src_ids, tgt_ids, batch_size):
            weights = cross_attention(self._aligner(), b.src, b.src_mask, b.tgt_in,
                                      b.tgt_mask)[layer]  # (B, T, S)
            for row, i in enumerate(chunk):
                src_len, tgt_len = len(src_ids[i]), len(tgt_ids[i])
                if src_len:
                    results[i] = weights[row, :tgt_len, :src_len].argmax(dim=-1).tolist()
        return results

    def _pairs(self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int
               ) -> Iterator[tuple[list[int], Batch]]:
        """(indices, teacher-forced Batch on the device), longest targets first."""
        pad, bos, eos = self.src_tok.pad_id, self.tgt_tok.bos_id, self.tgt_tok.eos_id
        for chunk in _length_batches([len(t) for t in tgt_ids], batch_size, skip_empty=False):
            yield chunk, make_batch([src_ids[i] for i in chunk], [tgt_ids[i] for i in chunk],
                                    pad, bos, eos).to(self.device)

    def _aligner(self):
        """The model whose cross-attention aligns: an ensemble's first."""
        return self.model.models[0] if isinstance(self.model, Ensemble) else self.model

    def check_alignment_layer(self, layer: int) -> None:
        """Refuse a layer the model has no cross-attention in (-1 is the last)."""
        layers = self.alignment_layers()
        if layers == 0:
            raise Seq2SeqError("this model has no cross-attention to align with "
                               "(model.attention none)")
        if not -layers <= layer < layers:
            raise Seq2SeqError(f"alignment layer must be between {-layers} and {layers - 1} "
                               f"(the model has {layers} decoder layers), got {layer}")

    @contextlib.contextmanager
    def _memory_guard(self, what: str) -> Iterator[None]:
        """An allocation failure inside becomes one line saying what to lower."""
        try:
            yield
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if not _out_of_memory(error):
                raise
            raise Seq2SeqError(f"out of memory {what} on {self.device}; lower --beam-size or "
                               "--batch-size") from None


def _length_batches(lengths: list[int], batch_size: int, skip_empty: bool
                    ) -> Iterator[list[int]]:
    """Indices in batches of batch_size, longest first, so batches are dense."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start : start + batch_size] if lengths[i] or not skip_empty]
        if chunk:
            yield chunk


def _out_of_memory(error: BaseException) -> bool:
    """Whether an allocation failed (CPU and CUDA allocators say so in different words)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text
