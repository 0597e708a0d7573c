"""Export a Transformer checkpoint to CTranslate2, through CTranslate2's own spec API.

Our model maps onto ctranslate2.specs.TransformerSpec piece by piece:

    src_embed, tgt_embed     encoder.embeddings[0], decoder.embeddings (scaled by sqrt(D))
    positions.table          encoder/decoder.position_encodings: our interleaved sin/cos
                             table, set explicitly (CTranslate2's default puts all sines
                             first, then all cosines)
    q/k/v_proj, out_proj     self_attention.linear[0] (q, k, v fused), linear[1];
                             cross: attention.linear[0] (q), linear[1] (k, v fused), linear[2]
    Residual.norm            the layer norm of the sublayer it wraps; pre_norm as model.norm
    encoder/decoder_norm     encoder/decoder.layer_norm (pre-norm only)
    ff.w_in, ff.w_out        ffn.linear_0, ffn.linear_1 (ReLU)
    output                   decoder.projection (no bias; tied weights are stored once)

LayerNorm epsilon is torch's 1e-5; CTranslate2's own return_attention gives the last decoder
layer's cross-attention averaged over its heads. Ids map to pieces one to one in
SentencePiece's order, so PAD, UNK, BOS and EOS keep ids 0-3; the source gets EOS appended
(add_source_eos), as ours.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq import __version__
from seq2seq.checkpoint import checkpoint_config, load_checkpoint, rebuild
from seq2seq.config import Config
from seq2seq.engines import FORMAT, FORMAT_VERSION, MANIFEST, import_ctranslate2, is_export_dir
from seq2seq.errors import Seq2SeqError
from seq2seq.files import check_writable_folder, reason, same_file
from seq2seq.model.transformer import Transformer, count_parameters
from seq2seq.tokenizer import Tokenizer

QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16")
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which our layers use
QUERY_SCALES = {"scaled_dot": None, "dot": 1.0}  # None: CTranslate2's 1 / sqrt(K)


def export_ctranslate2(checkpoint: Path, output: Path, quantization: str = "float32"
                       ) -> dict[str, Any]:
    """Write `output`, a CTranslate2 model folder for `checkpoint`; returns its manifest.

    output is written under a temporary name beside it and renamed into place when
    complete; an existing folder is replaced only when an earlier export wrote it. The RNN
    baseline and attention scores CTranslate2 cannot compute are refused in one line.
    """
    if quantization not in QUANTIZATIONS:
        raise Seq2SeqError(f"unknown quantization {quantization!r}; choose one of "
                           f"{', '.join(QUANTIZATIONS)}")
    ct2 = import_ctranslate2()
    output = check_export_output(Path(output), Path(checkpoint))
    state = load_checkpoint(checkpoint)
    config = checkpoint_config(state, str(checkpoint))
    refuse_unsupported(config)
    model, src_tok, tgt_tok, _ = rebuild(state, torch.device("cpu"), str(checkpoint))
    spec = transformer_spec(model, config, src_tok, tgt_tok)
    try:
        spec.validate()
        spec.optimize(quantization=quantization)
    except (ValueError, RuntimeError) as error:  # the spec's own checks
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise Seq2SeqError(f"CTranslate2 refused the model: {first}") from None
    joint = src_tok.model_bytes == tgt_tok.model_bytes
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "seq2seq_version": __version__,
        "ctranslate2_version": ct2.__version__, "quantization": quantization,
        "source_checkpoint": str(checkpoint), "checkpoint_checksum": state.get("checksum"),
        "step": state.get("step"), "metrics": state.get("metrics", {}),
        "parameters": count_parameters(model), "max_positions": model.max_positions,
        "tokenizers": ({"src": "spm.model", "tgt": "spm.model"} if joint
                       else {"src": "spm.src.model", "tgt": "spm.tgt.model"}),
        "decode": config.to_dict()["decode"], "config": config.to_dict(),
    }

    def fill(folder: Path) -> None:
        spec.save(str(folder))
        for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
            tok.save(folder / manifest["tokenizers"][side])
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        (folder / MANIFEST).write_text(text, encoding="utf-8")  # last: the folder is whole

    write_folder(output, fill)
    return manifest


def refuse_unsupported(config: Config) -> None:
    """One Seq2SeqError for a model CTranslate2's Transformer cannot run exactly."""
    m = config.model
    if m.arch != "transformer":
        raise Seq2SeqError(f"model.arch {m.arch} cannot be exported: CTranslate2 runs "
                           "Transformers only; translate this checkpoint with `seq2seq "
                           "translate CHECKPOINT`")
    if m.attention not in QUERY_SCALES:
        raise Seq2SeqError(f"model.attention {m.attention} cannot be exported: CTranslate2 "
                           "scores attention by a dot product (model.attention scaled_dot or "
                           "dot); translate this checkpoint with `seq2seq translate CHECKPOINT`")


def check_export_output(output: Path, checkpoint: Path) -> Path:
    """Refuse an output folder that would destroy something: a file, a folder that is not
    an earlier export (an empty one is fine), one holding the checkpoint; or unwritable."""
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise Seq2SeqError(f"-o {output} exists and is not a folder; give a new folder name")
    if output.is_dir():
        try:
            empty = not any(output.iterdir())
        except OSError as error:
            raise Seq2SeqError(f"-o {output}: {reason(error)}") from None
        if not (empty or is_export_dir(output)):
            raise Seq2SeqError(f"-o {output} exists and was not written by `seq2seq export`; "
                               "give a new folder name (nothing was written)")
        inside = Path(os.path.realpath(checkpoint)).parents
        if any(same_file(output, parent) for parent in inside):
            raise Seq2SeqError(f"-o {output} holds the checkpoint {checkpoint}; export to "
                               "another folder")
    check_writable_folder(output.parent, f"-o {output}")
    return output


def write_folder(output: Path, fill) -> None:
    """fill(tmp) writes a temporary folder beside `output`, renamed to `output` once whole;
    an earlier export there is moved aside first and deleted only after the rename."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    old = output.with_name(f".{output.name}.{os.getpid()}.old")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fill(tmp)
        if output.exists():
            os.rename(output, old)
        os.rename(tmp, output)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not output.exists():
            os.rename(old, output)  # put the earlier export back
        raise Seq2SeqError(f"cannot write -o {output}: {reason(error)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def vocabulary(tok: Tokenizer) -> list[str]:
    """Every piece in id order, so CTranslate2's token i is our id i."""
    return tok.pieces(range(tok.vocab_size))


def transformer_spec(model: Transformer, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer):
    """A ctranslate2.specs.TransformerSpec holding `model`'s weights (float32 arrays)."""
    from ctranslate2.specs import common_spec, transformer_spec

    m = config.model
    pre_norm = m.norm == "pre"
    encoder = transformer_spec.TransformerEncoderSpec(
        m.encoder_layers, m.n_heads, pre_norm=pre_norm, activation=common_spec.Activation.RELU)
    decoder = transformer_spec.TransformerDecoderSpec(  # return_attention: heads averaged
        m.decoder_layers, m.n_heads, pre_norm=pre_norm, activation=common_spec.Activation.RELU,
        alignment_layer=-1, alignment_heads=m.n_heads)
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    scale = QUERY_SCALES[m.attention]
    _set_encoder(encoder, model, scale)
    _set_decoder(decoder, model, scale)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.add_source_eos = True  # our encoder reads source + [EOS]
    spec.config.add_source_bos = False
    for key, index in (("unk_token", tgt_tok.unk_id), ("bos_token", tgt_tok.bos_id),
                       ("eos_token", tgt_tok.eos_id), ("decoder_start_token", tgt_tok.bos_id)):
        setattr(spec.config, key, tgt_tok.pieces([index])[0])
    spec.register_source_vocabulary(vocabulary(src_tok))
    spec.register_target_vocabulary(vocabulary(tgt_tok))
    return spec


def _set_encoder(spec, model: Transformer, scale: float | None) -> None:
    spec.embeddings[0].weight = _array(model.src_embed.weight)
    spec.position_encodings.encodings = _array(model.positions.table)  # (P, D)
    if hasattr(spec, "layer_norm"):  # pre-norm: the final norm
        _set_norm(spec.layer_norm, model.encoder_norm)
    for layer_spec, layer in zip(spec.layer, model.encoder, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, layer.attn_block.norm,
                       True, scale)
        _set_ffn(layer_spec.ffn, layer.ff, layer.ff_block.norm)


def _set_decoder(spec, model: Transformer, scale: float | None) -> None:
    spec.embeddings.weight = _array(model.tgt_embed.weight)
    spec.position_encodings.encodings = _array(model.positions.table)  # (P, D)
    if hasattr(spec, "layer_norm"):
        _set_norm(spec.layer_norm, model.decoder_norm)
    spec.projection.weight = _array(model.output.weight)  # (V, D), no bias
    for layer_spec, layer in zip(spec.layer, model.decoder, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, layer.self_block.norm,
                       True, scale)
        _set_attention(layer_spec.attention, layer.cross_attn, layer.cross_block.norm,
                       False, scale)
        _set_ffn(layer_spec.ffn, layer.ff, layer.ff_block.norm)


def _set_attention(spec, attn, norm, self_attention: bool, scale: float | None) -> None:
    """Self-attention fuses q, k, v into linear[0]; cross-attention keeps q (linear[0]) and
    fuses k, v (linear[1]); the output projection is the last linear."""
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    groups = [[q, k, v]] if self_attention else [[q], [k, v]]
    for linear_spec, parts in zip(spec.linear[: len(groups)], groups, strict=True):
        linear_spec.weight = np.concatenate([_array(p.weight) for p in parts])  # (n*D, D)
        linear_spec.bias = np.concatenate([_array(p.bias) for p in parts])  # (n*D,)
    _set_linear(spec.linear[-1], attn.out_proj)
    _set_norm(spec.layer_norm, norm)
    if scale is not None:
        spec.queries_scale = scale


def _set_ffn(spec, ff, norm) -> None:
    _set_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, ff.w_in)
    _set_linear(spec.linear_1, ff.w_out)


def _set_linear(spec, linear: torch.nn.Linear) -> None:
    spec.weight = _array(linear.weight)  # (out, in), as torch stores it
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _set_norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy().copy()
