"""Corpus BLEU and chrF through sacreBLEU: the only module that imports it."""

from dataclasses import dataclass

import sacrebleu

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def to_dict(self) -> dict[str, float | str]:
        return {"bleu": round(self.bleu, 2), "chrf": round(self.chrf, 2),
                "bleu_signature": self.bleu_signature, "chrf_signature": self.chrf_signature}


def score(hypotheses: list[str], references: list[str], lowercase: bool = False) -> Scores:
    """Detokenized hypotheses against raw references (sacreBLEU's 13a tokenizer)."""
    if len(hypotheses) != len(references):
        raise Seq2SeqError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                           "they must be line-aligned")
    chrf = sacrebleu.metrics.CHRF(lowercase=lowercase)
    refs = [references]
    # force: the toy data spaces its periods on purpose; no "forgot to detokenize" warning
    bleu = sacrebleu.metrics.BLEU(lowercase=lowercase, force=True)
    b, c = bleu.corpus_score(hypotheses, refs), chrf.corpus_score(hypotheses, refs)
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))
