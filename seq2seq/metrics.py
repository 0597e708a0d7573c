"""Corpus BLEU, chrF and TER, and paired significance tests, through sacreBLEU: the only
module that imports it."""

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sacrebleu
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import PairedTest

from seq2seq.errors import Seq2SeqError

METRICS = ("bleu", "chrf", "ter")
DEFAULT_METRICS = ("bleu", "chrf")
DEFAULT_TOKENIZE = "13a"
DEFAULT_SMOOTH = "exp"  # sacreBLEU's; "none" is multi-bleu.perl's (0 if an order has no match)
TOKENIZERS = tuple(sacrebleu.metrics.BLEU.TOKENIZERS)
METHODS = {"bootstrap": "bs", "ar": "ar"}  # our name -> sacreBLEU's test_type
DEFAULT_SEED = 12345  # sacreBLEU's own
DEFAULT_SAMPLES = {"bootstrap": 1000, "ar": 10000}  # sacreBLEU's own
LABELS = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}  # sacreBLEU's names for them


@dataclass(frozen=True)
class Scores:
    """Corpus scores by metric name (bleu, chrf, ter), their signatures, and BLEU's parts."""

    values: dict[str, float]
    signatures: dict[str, str]
    bleu_breakdown: dict[str, float | int | list[float]] | None = None

    @property
    def bleu(self) -> float:
        return self.values["bleu"]

    @property
    def chrf(self) -> float:
        return self.values["chrf"]

    def to_dict(self) -> dict:
        out: dict = {name: round(value, 2) for name, value in self.values.items()}
        out.update({f"{name}_signature": sig for name, sig in self.signatures.items()})
        if self.bleu_breakdown is not None:
            out["bleu_breakdown"] = self.bleu_breakdown
        return out


def parse_metrics(text: str) -> tuple[str, ...]:
    """'bleu,chrf,ter' (any subset, any order) -> ('bleu', 'chrf', 'ter'), checked."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise Seq2SeqError(f"--metrics is empty; give some of {','.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise Seq2SeqError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def check_metrics(names: Sequence[str], tokenize: str = DEFAULT_TOKENIZE,
                  lowercase: bool = False) -> None:
    """Refuse an unknown metric or BLEU tokenizer (or one whose package is missing) before
    any translating starts."""
    _build(names, tokenize, lowercase)


def score(hypotheses: list[str], references: list[str], lowercase: bool = False,
          metrics: Sequence[str] = DEFAULT_METRICS, tokenize: str = DEFAULT_TOKENIZE,
          smooth: str = DEFAULT_SMOOTH) -> Scores:
    """Corpus scores of detokenized hypotheses against raw references, one of each per line.

    Args:
        metrics: any of bleu, chrf, ter.
        tokenize: sacreBLEU's BLEU tokenizer (13a, intl, zh, char, none, ...).
        smooth: BLEU's smoothing: exp (sacreBLEU's default), none, floor or add-k.
    """
    _check_aligned(hypotheses, references)
    built = _build(metrics, tokenize, lowercase, smooth)
    values, signatures, breakdown = {}, {}, None
    for name, metric in built.items():
        result = metric.corpus_score(hypotheses, [references])
        values[name], signatures[name] = result.score, str(metric.get_signature())
        if name == "bleu":
            breakdown = {"precisions": [round(p, 2) for p in result.precisions],
                         "brevity_penalty": round(result.bp, 4),
                         "ratio": round(result.ratio, 4), "hyp_len": result.sys_len,
                         "ref_len": result.ref_len}
    return Scores(values, signatures, breakdown)


@dataclass(frozen=True)
class SystemScore:
    """One metric of one system in a paired test: the corpus score, the bootstrap mean and
    half-width of its 95% confidence interval, and the p-value against the baseline (None
    for the baseline itself)."""

    score: float
    mean: float | None
    ci: float | None
    p_value: float | None


@dataclass(frozen=True)
class PairedResult:
    """A paired test of several systems: per metric name, one SystemScore per system."""

    scores: dict[str, list[SystemScore]]
    signatures: dict[str, str]


def paired_test(systems: list[list[str]], references: list[str], method: str,
                n_samples: int, seed: int = DEFAULT_SEED, metrics: Sequence[str] = DEFAULT_METRICS,
                tokenize: str = DEFAULT_TOKENIZE, lowercase: bool = False,
                n_confidence: int | None = None, smooth: str = DEFAULT_SMOOTH
                ) -> PairedResult:
    """sacreBLEU's paired bootstrap resampling or approximate randomisation of each system
    against the first (the baseline).

    Args:
        systems: hypotheses of each system, each line-aligned with references.
        method: bootstrap or ar.
        n_samples: bootstrap resamples, or randomisation trials for ar.
        seed: >= 1 (sacreBLEU takes 0 as "no seed").
        n_confidence: for ar, the bootstrap resamples behind the confidence intervals
            (default n_samples).
    A system identical to the baseline gets p = 1.
    """
    if method not in METHODS:
        raise Seq2SeqError(f"unknown method {method!r}; known: {', '.join(METHODS)}, both")
    if n_samples < 1:
        raise Seq2SeqError(f"--n-samples must be >= 1, got {n_samples}")
    for hypotheses in systems:
        _check_aligned(hypotheses, references)
    built = _build(metrics, tokenize, lowercase, smooth)
    named = [(f"system {i}", hyps) for i, hyps in enumerate(systems)]
    confidence = (n_confidence or n_samples) if method == "ar" else -1
    with _sacrebleu_seed(seed):
        test = PairedTest(named, built, [references], test_type=METHODS[method],
                          n_samples=n_samples, n_ar_confidence=confidence)
        signatures, columns = test()
    same = [i > 0 and hyps == systems[0] for i, hyps in enumerate(systems)]
    scores, signed = {}, {}
    for name, label in zip(built, signatures, strict=True):  # sacreBLEU's names, same order
        scores[name] = [_system_score(r, copy) for r, copy in zip(columns[label], same,
                                                                   strict=True)]
        signed[name] = str(signatures[label])
    return PairedResult(scores, signed)


@contextlib.contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    """Set SACREBLEU_SEED while a paired test runs: sacreBLEU reads its seed only from there."""
    if not isinstance(seed, int) or seed < 1:
        raise Seq2SeqError(f"--seed must be an integer >= 1 (sacreBLEU takes 0 as no seed), "
                           f"got {seed}")
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = old


def _system_score(result, identical: bool) -> SystemScore:
    """sacreBLEU's Result as plain floats; p = 1 for a copy of the baseline, where sacreBLEU's
    strict count (resamples with a difference above the observed zero) gives 1 / (n + 1)."""
    p_value = 1.0 if identical else _float(result.p_value)
    return SystemScore(float(result.score), _float(result.mean), _float(result.ci), p_value)


def _float(value) -> float | None:
    """sacreBLEU's numpy numbers as plain floats, for JSON and comparisons."""
    return None if value is None else float(value)


def _check_aligned(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise Seq2SeqError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                           "they must be line-aligned")
    if not references:
        raise Seq2SeqError("nothing to score: no references")


def _build(names: Sequence[str], tokenize: str, lowercase: bool,
           smooth: str = DEFAULT_SMOOTH) -> dict[str, Metric]:
    """sacreBLEU metric objects by our name, cased unless lowercase."""
    if tokenize not in TOKENIZERS:
        raise Seq2SeqError(f"unknown BLEU tokenizer {tokenize!r}; sacreBLEU knows: "
                           f"{', '.join(TOKENIZERS)}")
    built: dict[str, Metric] = {}
    for name in names:
        if name not in METRICS:
            raise Seq2SeqError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        if name == "chrf":
            built[name] = sacrebleu.metrics.CHRF(lowercase=lowercase)
        elif name == "ter":  # sacreBLEU's TER ignores case unless told
            built[name] = sacrebleu.metrics.TER(case_sensitive=not lowercase)
        else:
            built[name] = _bleu(tokenize, lowercase, smooth)
    return built


def _bleu(tokenize: str, lowercase: bool, smooth: str = DEFAULT_SMOOTH) -> Metric:
    try:
        # force: the toy data spaces its periods on purpose; no "forgot to detokenize" warning
        return sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize, force=True,
                                      smooth_method=smooth)
    except (ImportError, OSError, RuntimeError) as error:  # mecab or a SentencePiece model
        raise Seq2SeqError(f"sacreBLEU's {tokenize!r} tokenizer is not available here "
                           f"({' '.join(str(error).split())}); install what it needs or "
                           "choose another --tokenize") from None
