"""The model behind `seq2seq serve`: a Translator-like engine, the checks a request's
decoding options get, and one batch of sentences translated into plain data for JSON.

The server relies only on what every engine offers (Translator's `options`, `nbest`,
`src_tok`), so an exported model whose translator has the same methods can stand in for
a checkpoint; attention maps need the PyTorch model itself and are refused otherwise.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class Decoding:
    """One request's decoding options, checked; requests with equal ones share a batch."""

    beam_size: int  # 1 = greedy
    length_penalty: float
    max_len_ratio: float
    nbest: int  # <= beam_size
    attention: bool  # add every layer's attention weights of the best translation


class Served:
    """A loaded model with what /info says about it."""

    def __init__(self, translator, info: dict[str, Any], max_tokens: int,
                 has_attention: bool):
        """translator: a Translator, or another engine with its options, nbest, encode,
        src_tok and decode; info: what /info reports (engine, model config, parameters,
        ...); max_tokens: the most source pieces a sentence may have; has_attention:
        whether translator.model can give attention weights (our own PyTorch model)."""
        self.translator, self.info = translator, info
        self.max_tokens, self.has_attention = max_tokens, has_attention

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Served":
        """A checkpoint (*.pt) or its run directory, on `device`; Seq2SeqError when the
        file is missing, damaged or foreign."""
        path = Path(path)
        from seq2seq.engines import is_export_dir

        if is_export_dir(path):  # written by `seq2seq export`: CTranslate2 runs it
            return cls.load_exported(path, device)
        return cls.load_checkpoint(path, device)

    @classmethod
    def load_exported(cls, path: Path, device: str) -> "Served":
        """A folder `seq2seq export` wrote, translated by CTranslate2 (no attention maps:
        the engine keeps no per-layer weights)."""
        from seq2seq.engines.ct2 import CT2Translator

        translator = CT2Translator.from_dir(path, device)
        manifest = translator.manifest
        full = manifest.get("config", {})
        data = full.get("data", {})
        info = {"engine": "ctranslate2", "export": str(path),
                "checkpoint": manifest.get("source_checkpoint"), "step": manifest.get("step"),
                "device": device, "parameters": manifest.get("parameters"),
                "quantization": manifest.get("quantization"),
                "vocabulary": {"source": translator.src_tok.vocab_size,
                               "target": translator.tgt_tok.vocab_size,
                               "joint": translator.src_tok is translator.tgt_tok},
                "model": full.get("model", {}), "decode": full.get("decode", {}),
                "examples": example_sentences(Path(f"{data.get('dev')}.{data.get('src')}"))}
        return cls(translator, info, int(manifest["max_positions"]) - 1, has_attention=False)

    @classmethod
    def load_checkpoint(cls, path: Path, device: str) -> "Served":
        from seq2seq.checkpoint import load_checkpoint, rebuild, resolve_checkpoint
        from seq2seq.model.transformer import count_parameters
        from seq2seq.runtime import resolve_device
        from seq2seq.translate import Translator

        dev = resolve_device(device)
        path = resolve_checkpoint(path)
        state = load_checkpoint(path)
        model, src_tok, tgt_tok, config = rebuild(state, dev, str(path))
        info = {"engine": "pytorch", "checkpoint": str(path), "step": state.get("step"),
                "device": str(dev), "parameters": count_parameters(model),
                "vocabulary": {"source": src_tok.vocab_size, "target": tgt_tok.vocab_size,
                               "joint": state["tokenizers"]["src"] == state["tokenizers"]["tgt"]},
                "model": config.to_dict()["model"], "decode": config.to_dict()["decode"],
                "examples": example_sentences(Path(f"{config.data.dev}.{config.data.src}"))}
        translator = Translator(model, src_tok, tgt_tok, config.decode, dev)
        return cls(translator, info, model.max_positions - 1, has_attention=True)

    def decoding(self, beam_size: int | None, nbest: int, length_penalty: float | None,
                 max_len_ratio: float | None, attention: bool, max_beam: int) -> Decoding:
        """A request's options, None taken from the checkpoint; Seq2SeqError naming the
        first one out of range."""
        if beam_size is not None and beam_size > max_beam:
            raise Seq2SeqError(f"beam_size must be at most {max_beam} on this server "
                               f"(serve --max-beam), got {beam_size}")
        beam, alpha, ratio, _ = self.translator.options(beam_size, length_penalty,
                                                        max_len_ratio)
        if beam > max_beam:  # the checkpoint's own default is over the server's limit
            beam = max_beam
        if not 1 <= nbest <= beam:  # an n-best list comes from the beam
            raise Seq2SeqError(f"nbest must be between 1 and the beam size ({beam}), got "
                               f"{nbest}; raise beam_size for a longer list")
        if attention and not self.has_attention:
            raise Seq2SeqError("attention maps need the PyTorch model; this engine has none")
        return Decoding(beam, alpha, ratio, nbest, attention)

    def token_counts(self, texts: list[str]) -> list[int]:
        """How many source pieces each text has (no EOS)."""
        return [len(ids) for ids in self.translator.src_tok.encode(texts)]

    def run(self, d: Decoding, texts: list[str]) -> list[dict[str, Any]]:
        """Translate texts (one batch) with d; per text a dict with "translation", "score",
        "nbest" (text, score, log_prob of each, best first) and, when d.attention,
        "attention" (maps_json of the best, or None for a blank text)."""
        t = self.translator
        groups = t.nbest(texts, d.nbest, d.beam_size, d.length_penalty, d.max_len_ratio,
                         batch_size=t.decode.batch_size)
        results = []
        for text, group in zip(texts, groups, strict=True):
            best = group[0]
            result = {"translation": best.text, "score": best.score,
                      "nbest": [{"text": h.text, "score": h.score, "log_prob": h.log_prob}
                                for h in group]}
            if d.attention:
                result["attention"] = self._attention(text, best) if text.strip() else None
            results.append(result)
        return results

    def _attention(self, text: str, best) -> dict:
        from seq2seq.inspection.attention_maps import maps_json, teacher_forced_maps

        t = self.translator
        ids = t.encode([text])[0]
        maps = teacher_forced_maps(t.model, t.src_tok, t.tgt_tok, ids, best.tokens, text,
                                   best.text)
        return maps_json(maps)


def example_sentences(path: Path, n: int = 4) -> list[str]:
    """A few sentences of 4 to 12 words from the start of the model's validation source
    (the page offers them to try), or none when that file is not here to read."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(1 << 16).splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    found = [line.strip() for line in head if 4 <= len(line.split()) <= 12]
    return list(dict.fromkeys(found))[:n]
