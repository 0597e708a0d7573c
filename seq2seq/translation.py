"""What translating takes and returns beside text: input checks, a hypothesis with its
scores (n-best lists, samples) and the score of a given translation (forced decoding)."""

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from seq2seq.errors import Seq2SeqError
from seq2seq.sampling import Sampling
from seq2seq.search import Hypothesis
from seq2seq.tokenizer import Tokenizer

# (src, src_mask, max_lens, prefix) -> each sentence's hypotheses
Search = Callable[[Tensor, Tensor, Tensor, Tensor | None], list[list[Hypothesis]]]


@dataclass
class Translation:
    """One hypothesis of an n-best list or a sample, with its scores."""

    text: str
    tokens: list[int]  # target token ids, no BOS/EOS
    log_prob: float  # total log-probability (of EOS too when eos)
    score: float  # log_prob / length penalty: what beam search ranks by
    eos: bool  # ended with EOS, else at the length limit
    token_log_probs: list[float] | None = None  # per token, then EOS's when eos
    alignment: list[int] | None = None  # per token: the source token attended to most


@dataclass(frozen=True)
class PairScore:
    """A given translation's score under the model (forced decoding)."""

    log_prob: float  # total log-probability, EOS included
    tokens: int  # target tokens scored, EOS included
    token_log_probs: list[float]

    @property
    def mean_log_prob(self) -> float:
        return self.log_prob / self.tokens

    @property
    def perplexity(self) -> float:
        nll = -self.mean_log_prob
        return math.exp(nll) if nll < 709 else math.inf  # exp(710) overflows a float


def check_nbest(n: int, beam_size: int) -> None:
    """An n-best list comes from the beam: at most beam_size entries."""
    if not 1 <= n <= beam_size:
        raise Seq2SeqError(f"nbest must be between 1 and the beam size ({beam_size}), got {n}; "
                           "raise --beam-size for a longer list")


def check_sampling(n: int, temperature: float, top_k: int, top_p: float) -> Sampling:
    """The Sampling these values describe, each checked."""
    if n < 1:
        raise Seq2SeqError(f"the number of samples must be >= 1, got {n}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise Seq2SeqError(f"temperature must be a finite number > 0, got {temperature}")
    if top_k < 0:
        raise Seq2SeqError(f"top-k must be >= 0 (0 keeps every token), got {top_k}")
    if not 0 < top_p <= 1:  # NaN fails this too
        raise Seq2SeqError(f"top-p must be in (0, 1], got {top_p}")
    return Sampling(temperature, top_k, top_p)


def as_lines(sentences: str | list[str]) -> tuple[list[str], bool]:
    """(the sentences as a list, whether one string was given); TypeError for other types,
    so a string is never read as a list of characters nor an iterator consumed unseen."""
    if isinstance(sentences, str):
        return [sentences], True
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"translate() takes a string or a list of strings, not "
                        f"{type(sentences).__name__}")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TypeError(f"translate(): sentence {i} is {type(sentence).__name__}, not a "
                            "string")
    return list(sentences), False


def report_unknown(tok: Tokenizer, lines: list[str], ids: list[list[int]]) -> None:
    """One warning line on stderr counting the characters `tok` read as <unk>."""
    unk = tok.unk_id
    lossy = [i for i, x in enumerate(ids) if unk in x]
    if not lossy:
        return
    chars = [c for i in lossy for c in tok.unknown_characters(lines[i])]
    examples = " ".join(dict.fromkeys(chars))[:40]
    print(f"warning: {len(chars)} character(s) in {len(lossy)} sentence(s) have no piece in "
          f"the tokenizer and were read as <unk> ({examples}); tokenizer.byte_fallback: true "
          "(retrain) keeps every character", file=sys.stderr)
