"""CT2Translator: a folder `seq2seq export` wrote, translated on CTranslate2, behind the
Translator's own translate() and nbest() (the same options, checks, batching, warnings and
Translation objects; only the search underneath differs).

How each search is mapped onto CTranslate2's (and what is not the same as search.py):

    greedy   the same algorithm: the most probable token, PAD and BOS suppressed, until EOS
             or the sentence's limit; identical tokens up to float rounding.
    beam     CTranslate2 ranks the 2k best extensions by raw log-probability and finishes the
             EOS ones among the first k, as ours. It runs with length_penalty 1, so it stops
             when k hypotheses have finished (as ours; with 0 it would stop when the best beam
             finishes) and its score times the length (EOS included, return_end_token) is the
             raw log-probability; the finished hypotheses are then ranked by our GNMT penalty
             ((5 + length) / 6) ** alpha. Where more than k finish in one step, or a sentence
             reaches its limit, the two keep slightly different sets (rare).
    limits   ratio x source tokens + 10 per sentence, but CTranslate2 takes one limit per
             call: a batch is translated with its shortest limit, and the sentences that had
             not finished by then again, in groups that share their own limit.

Refused, each in one line (REFUSED): sampling, a prefix, token scores, alignment, forced
scoring and ensembles, whose results CTranslate2 would compute differently.
"""

import platform
from pathlib import Path

import torch

from seq2seq.config import from_dict
from seq2seq.engines import MANIFEST, import_ctranslate2, read_manifest
from seq2seq.errors import Seq2SeqError
from seq2seq.search import Hypothesis, length_penalty
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import Translator
from seq2seq.translation import Search

CHECKPOINT_ONLY = "; translate the checkpoint itself for that"
REFUSED = {
    "ensemble": "an exported folder translates alone: an ensemble needs checkpoints (*.pt)",
    "sample": "sampling needs a checkpoint: CTranslate2 draws from its own random stream and "
              "applies top-k, top-p and temperature in another order, so its samples and "
              "scores would not be ours" + CHECKPOINT_ONLY,
    "prefix": "a prefix needs a checkpoint: CTranslate2 leaves a forced prefix's "
              "log-probabilities out of its scores, so its ranking would not be ours"
              + CHECKPOINT_ONLY,
    "token_scores": "token scores need a checkpoint: CTranslate2 returns each hypothesis' "
                    "total only" + CHECKPOINT_ONLY,
    "alignment": "alignment needs a checkpoint: CTranslate2 returns the attention of the layer "
                 "chosen at export, not of any layer" + CHECKPOINT_ONLY,
    "score": "forced scoring needs a checkpoint: CTranslate2's scores do not rule out PAD and "
             "BOS as ours do" + CHECKPOINT_ONLY,
}


class CT2Model:
    """What Translator reads from its model (max_positions), and the CTranslate2 engine
    with the id <-> piece maps between our ids and its tokens (the same order)."""

    def __init__(self, engine, max_positions: int, src_tok: Tokenizer, tgt_tok: Tokenizer):
        self.engine, self.max_positions = engine, max_positions
        self.src_pieces = src_tok.pieces(range(src_tok.vocab_size))  # id -> piece
        self.tgt_ids = {p: i for i, p in enumerate(tgt_tok.pieces(range(tgt_tok.vocab_size)))}
        self.eos_piece = tgt_tok.pieces([tgt_tok.eos_id])[0]
        # PAD and BOS are never outputs, as in search.py (_step_log_probs)
        self.suppressed = [[p] for p in tgt_tok.pieces([tgt_tok.pad_id, tgt_tok.bos_id])]

    def search(self, sources: list[list[str]], beam_size: int, limit: int,
               max_batch_size: int = 0) -> list:
        """CTranslate2's results for source pieces (no EOS: the model adds it), one output
        limit for all: greedy for beam 1, else beam search returning all k finished.
        max_batch_size: 0, one batch; else CTranslate2's own length-sorted batches."""
        return self.engine.translate_batch(
            sources, max_batch_size=max_batch_size, beam_size=beam_size,
            num_hypotheses=beam_size,
            length_penalty=0.0 if beam_size == 1 else 1.0, max_decoding_length=limit,
            min_decoding_length=0, max_input_length=0, return_scores=True,
            return_end_token=True, suppress_sequences=self.suppressed)

    def done_before(self, result, limit: int) -> bool:
        """Whether a search finished before step `limit`: every hypothesis ended with EOS
        in fewer tokens (EOS included)."""
        return all(pieces and pieces[-1] == self.eos_piece and len(pieces) < limit
                   for pieces in result.hypotheses)

    def hypotheses(self, result, beam_size: int, alpha: float, n: int) -> list[Hypothesis]:
        """One CTranslate2 result as our n best Hypotheses, ranked by our length penalty."""
        out = []
        for pieces, score in zip(result.hypotheses, result.scores, strict=True):
            eos = bool(pieces) and pieces[-1] == self.eos_piece
            length = len(pieces)  # EOS included, as our penalty counts it
            log_prob = score if beam_size == 1 else score * length  # beam: score = lp / length
            tokens = [self.tgt_ids[p] for p in (pieces[:-1] if eos else pieces)]
            out.append(Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha),
                                  eos))
        return sorted(out, key=lambda h: h.score, reverse=True)[:n]


class CT2Translator(Translator):
    """Translator.translate() and nbest() on an exported folder, run by CTranslate2.

    >>> t = CT2Translator.from_dir("exports/toy")  # written by `seq2seq export`
    >>> t.translate("the big dog sees two cats .", beam_size=5)

    Options left as None take the decode section the folder was exported with.
    """

    engine_name = "ctranslate2"

    def __init__(self, model: CT2Model, src_tok: Tokenizer, tgt_tok: Tokenizer, decode,
                 manifest: dict):
        # ids are batched as CPU tensors whatever device CTranslate2 runs on
        super().__init__(model, src_tok, tgt_tok, decode, torch.device("cpu"))
        self.manifest = manifest

    @classmethod
    def from_dir(cls, folder: str | Path, device: str = "auto", threads: int = 0
                 ) -> "CT2Translator":
        """Open a folder `seq2seq export` wrote. device: auto (CUDA when CTranslate2 sees
        one), cpu, cuda or cuda:N; threads: CPU threads (0: as many as torch uses)."""
        ct2 = import_ctranslate2()
        folder = Path(folder)
        manifest = read_manifest(folder)
        config = from_dict(manifest.get("config"), source=f"{folder}/{MANIFEST} config")
        names = manifest.get("tokenizers", {})
        src_tok = Tokenizer.load(folder / names.get("src", "spm.model"))
        tgt_tok = (src_tok if names.get("tgt") == names.get("src")
                   else Tokenizer.load(folder / names.get("tgt", "spm.model")))
        kind, index = ct2_device(ct2, device)
        compute = compute_type(kind, str(manifest.get("quantization", "")))
        try:
            engine = ct2.Translator(str(folder), device=kind, device_index=index,
                                    compute_type=compute,
                                    intra_threads=threads or torch.get_num_threads())
        except (RuntimeError, ValueError, OSError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise Seq2SeqError(f"{folder}: CTranslate2 cannot load the model: {first}; export "
                               "the checkpoint again") from None
        model = CT2Model(engine, int(manifest["max_positions"]), src_tok, tgt_tok)
        return cls(model, src_tok, tgt_tok, config.decode, manifest)

    def _beam(self, beam_size: int, alpha: float, n: int) -> Search:
        """Translator's search hook: CTranslate2 on a batch, each sentence within its own
        length limit."""
        model: CT2Model = self.model

        def search(src, src_mask, max_lens, prefix):
            if prefix is not None:
                raise Seq2SeqError(REFUSED["prefix"])
            lengths = src_mask.flatten(1).sum(dim=1).tolist()  # (B,), EOS included
            sources = [[model.src_pieces[i] for i in row[: length - 1]]
                       for row, length in zip(src.tolist(), lengths, strict=True)]
            limits = max_lens.tolist()
            found: list[list[Hypothesis]] = [[] for _ in sources]
            # One call with the batch's shortest limit; a limit acts only at its last step,
            # so a sentence done before it is as its own limit would have it. The others
            # are translated again, in groups sharing their own limit.
            first = min(limits)
            again = []
            for i, result in enumerate(model.search(sources, beam_size, first)):
                if limits[i] == first or model.done_before(result, first):
                    found[i] = model.hypotheses(result, beam_size, alpha, n)
                else:
                    again.append(i)
            for limit in sorted({limits[i] for i in again}):
                at = [i for i in again if limits[i] == limit]
                results = model.search([sources[i] for i in at], beam_size, limit)
                for i, result in zip(at, results, strict=True):
                    found[i] = model.hypotheses(result, beam_size, alpha, n)
            return found

        return search

    def nbest(self, sentences: list[str], n: int = 1, beam_size: int | None = None,
              length_penalty: float | None = None, max_len_ratio: float | None = None,
              batch_size: int | None = None, prefixes: list[str] | None = None,
              token_scores: bool = False, alignment_layer: int | None = None,
              first_line: int = 1):
        """Translator.nbest, without prefixes, token scores or alignment (REFUSED)."""
        for what, asked in (("prefix", prefixes is not None), ("token_scores", token_scores),
                            ("alignment", alignment_layer is not None)):
            if asked:
                raise Seq2SeqError(REFUSED[what])
        return super().nbest(sentences, n, beam_size, length_penalty, max_len_ratio,
                             batch_size, first_line=first_line)

    def sample(self, *args, **kwargs):
        raise Seq2SeqError(REFUSED["sample"])

    def score(self, *args, **kwargs):
        raise Seq2SeqError(REFUSED["score"])

    def check_alignment_layer(self, layer: int) -> None:
        raise Seq2SeqError(REFUSED["alignment"])

    def alignment_layers(self) -> int:
        raise Seq2SeqError(REFUSED["alignment"])


def compute_type(kind: str, quantization: str) -> str:
    """CTranslate2's compute_type for a model exported with `quantization` on device `kind`.

    An x86 CPU without VNNI multiplies int8 with vpmaddubsw, whose 16-bit sums saturate:
    on such a CPU an int8 model translated far worse than its float32 export (toy data: 69
    against 100 BLEU). There its weights are widened to float32 when loaded: the folder keeps
    its int8 size, and the output matches the float32 export.
    """
    if kind == "cpu" and quantization.startswith("int8") and not int8_exact_on_cpu():
        return "float32"
    return "default"


def int8_exact_on_cpu() -> bool:
    """False on an x86 CPU whose /proc/cpuinfo lists no VNNI (avx512_vnni or avx_vnni)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True  # ARM's int8 kernels accumulate in 32 bits
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # not Linux: nothing to tell by
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def ct2_device(ct2, device: str) -> tuple[str, int]:
    """(CTranslate2 device, index) for our --device words: auto, cpu, cuda, cuda:N."""
    cuda = ct2.get_cuda_device_count()
    if device == "auto":
        return ("cuda", 0) if cuda else ("cpu", 0)
    if device == "cpu":
        return "cpu", 0
    kind, _, number = device.partition(":")
    if kind != "cuda" or not (number == "" or number.isdigit()):
        raise Seq2SeqError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    index = int(number or 0)
    if index >= cuda:
        raise Seq2SeqError(f"device {device}: CTranslate2 sees {cuda} CUDA device(s); use "
                           "--device cpu")
    return "cuda", index
