"""Parameter and cost accounting for a built model: where the weights are, what a token costs.

Pure functions over a model: they read its modules and their real shapes, never a config.
"""

from torch import nn

from seq2seq.model.attention import AdditiveScore, CosineScore, GeneralScore, MultiHeadAttention
from seq2seq.model.rnn import RNNSeq2Seq
from seq2seq.model.transformer import Transformer

Rows = list[tuple[str, int]]


def parameter_table(model: Transformer) -> Rows:
    """(component, parameters) rows, ending with ("total", n).

    Every tensor is counted once, where it first appears: a shared source/target embedding
    gives one row, a tied output layer a row of 0 that says so. The total equals
    sum(p.numel() for p in model.parameters()).
    """
    seen: set[int] = set()
    rows = _embedding_rows(model, seen)
    if not isinstance(model, Transformer):  # e.g. the RNN baseline: one row per component
        rows += [(name, _count(child, seen)) for name, child in model.named_children()]
        rows = [(name, n) for name, n in rows if n]
        rows.append(("total", sum(n for _, n in rows)))
        return rows
    for i, layer in enumerate(model.encoder):
        rows += _attention_rows(f"encoder.{i} self-attn", layer.self_attn, seen)
        rows.append((f"encoder.{i} feed-forward", _count(layer.ff, seen)))
        rows.append((f"encoder.{i} norms", _count_all([layer.attn_block, layer.ff_block], seen)))
    for i, layer in enumerate(model.decoder):
        rows += _attention_rows(f"decoder.{i} self-attn", layer.self_attn, seen)
        rows += _attention_rows(f"decoder.{i} cross-attn", layer.cross_attn, seen)
        rows.append((f"decoder.{i} feed-forward", _count(layer.ff, seen)))
        blocks = [layer.self_block, layer.cross_block, layer.ff_block]
        rows.append((f"decoder.{i} norms", _count_all(blocks, seen)))
    for side, norm in (("encoder", model.encoder_norm), ("decoder", model.decoder_norm)):
        if isinstance(norm, nn.LayerNorm):
            rows.append((f"{side} final norm", _count(norm, seen)))
    tied = model.output.weight is model.tgt_embed.weight
    label = "output layer (tied to target embedding)" if tied else "output layer"
    rows.append((label, _count(model.output, seen)))
    rest = sum(p.numel() for p in model.parameters() if id(p) not in seen)
    if rest:  # a module added to the model but not yet itemised here
        rows.append(("other (not itemised)", rest))
    rows.append(("total", sum(n for _, n in rows)))
    return rows


def _embedding_rows(model: Transformer, seen: set[int]) -> Rows:
    if model.src_embed is model.tgt_embed:
        return [("embedding, source = target (shared)", _count(model.tgt_embed, seen))]
    return [("embedding, source", _count(model.src_embed, seen)),
            ("embedding, target", _count(model.tgt_embed, seen))]


def _attention_rows(prefix: str, attn: MultiHeadAttention, seen: set[int]) -> Rows:
    """Q, K, V and output projections (weights + biases), then the score's own parameters."""
    rows = [(f"{prefix} {name}", _count(proj, seen)) for name, proj in (
        ("Q", attn.q_proj), ("K", attn.k_proj), ("V", attn.v_proj), ("output", attn.out_proj))]
    score = _count(attn.score, seen)
    if score:
        rows.append((f"{prefix} score ({_score_params(attn.score)})", score))
    return rows


def _score_params(score: nn.Module) -> str:
    if isinstance(score, CosineScore):
        return "temperature per head"
    if isinstance(score, GeneralScore):
        return "W per head"
    if isinstance(score, AdditiveScore):
        return "W_q, W_k, v per head"
    return type(score).__name__


def _count(module: nn.Module, seen: set[int]) -> int:
    """Elements of the module's parameters not counted before; marks them counted."""
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _count_all(modules: list[nn.Module], seen: set[int]) -> int:
    return sum(_count(m, seen) for m in modules)


def flops_per_target_token(model: Transformer, src_len: int, tgt_len: int) -> dict[str, float]:
    """Matrix-product FLOPs per target token for one sentence pair of these lengths.

    Lengths are as the model sees them: S = source tokens + EOS, T = target tokens + 1
    (BOS + tokens in, tokens + EOS out). Counting 2 FLOPs per multiply-add, for the model's
    real shapes (n inputs through a d_in x d_out linear cost 2 n d_in d_out; K = D / H):

        attention(Tq, Tk) = 2 Tq D D (Q) + 2 Tk D D (K) + 2 Tk D D (V) + 2 Tq D D (output)
                            + 2 Tq Tk D (Q K^T) + 2 Tq Tk D (P V)
                            + general: 2 Tq D K (q W);  additive: 2 (Tq + Tk) D K (W_q q,
                              W_k k), and its v product replaces Q K^T at the same cost
        feed-forward(n)   = 2 n D F + 2 n F D
        encoder layer     = attention(S, S) + feed-forward(S)
        decoder layer     = attention(T, T) + attention(T, S) + feed-forward(T)
        output layer      = 2 T D V
        forward           = (sum of all layers + output layer) / T
        training          = 3 x forward (the backward pass costs two products per forward one)

    The encoder's cost, which grows with S, becomes per target token through the division
    by T (i.e. per source token x S / T). Decoder self-attention is counted over the full
    T x T score matrix, as a plain (and the fused) implementation computes it, though the
    causal mask discards half. Not counted: embeddings (lookups), softmax, norms, biases,
    residual adds, activations. Returns {"forward", "training", "encoder", "decoder",
    "output"}, the last three the forward pass's parts.

    The RNN baseline (model.arch rnn) is counted the same way; see _rnn_forward_parts.
    """
    encoder, decoder, output = _forward_parts(model, src_len, tgt_len)
    parts = {"encoder": encoder / tgt_len, "decoder": decoder / tgt_len,
             "output": output / tgt_len}
    forward = sum(parts.values())
    return {"forward": forward, "training": 3 * forward, **parts}


def training_flops(model: Transformer, src_lens: list[int], tgt_lens: list[int]) -> int:
    """Training FLOPs (forward + backward) for sentence pairs of these lengths, summed.

    src_lens[i], tgt_lens[i]: lengths as in flops_per_target_token, whose formula this
    sums over the pairs (times T each). For model FLOPs utilisation:
    training_flops(...) / seconds / the device's peak FLOP/s.
    """
    if len(src_lens) != len(tgt_lens):
        raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
    return 3 * sum(sum(_forward_parts(model, s, t))
                   for s, t in zip(src_lens, tgt_lens, strict=True))


def _forward_parts(model: Transformer, src_len: int, tgt_len: int) -> tuple[int, int, int]:
    """Forward FLOPs of one sentence pair: (encoder, decoder, output layer)."""
    if src_len < 1 or tgt_len < 1:
        raise ValueError(f"lengths must be >= 1, got src_len={src_len}, tgt_len={tgt_len}")
    if isinstance(model, RNNSeq2Seq):
        return _rnn_forward_parts(model, src_len, tgt_len)
    encoder = sum(_encoder_layer_flops(layer, src_len) for layer in model.encoder)
    decoder = sum(_decoder_layer_flops(layer, src_len, tgt_len) for layer in model.decoder)
    return encoder, decoder, _linear_flops(model.output, tgt_len)


def _linear_flops(linear: nn.Linear, n: int) -> int:
    """n vectors through linear: 2 n d_in d_out."""
    return 2 * n * linear.in_features * linear.out_features


def _attention_flops(attn: MultiHeadAttention, tq: int, tk: int) -> int:
    """Tq queries attending to Tk keys, projections included."""
    proj = (_linear_flops(attn.q_proj, tq) + _linear_flops(attn.k_proj, tk)
            + _linear_flops(attn.v_proj, tk) + _linear_flops(attn.out_proj, tq))
    width = attn.n_heads * attn.head_dim  # D
    scores = 2 * tq * tk * width  # Q K^T, or additive's v . tanh(...), over all heads
    weighted_sum = 2 * tq * tk * width  # P V
    if isinstance(attn.score, GeneralScore):
        scores += 2 * tq * width * attn.head_dim  # q W_h
    elif isinstance(attn.score, AdditiveScore):
        scores += 2 * (tq + tk) * width * attn.head_dim  # W_q q and W_k k
    return proj + scores + weighted_sum


def _feed_forward_flops(layer: nn.Module, n: int) -> int:
    return _linear_flops(layer.ff.w_in, n) + _linear_flops(layer.ff.w_out, n)


def _encoder_layer_flops(layer: nn.Module, src_len: int) -> int:
    return _attention_flops(layer.self_attn, src_len, src_len) + _feed_forward_flops(layer, src_len)


def _decoder_layer_flops(layer: nn.Module, src_len: int, tgt_len: int) -> int:
    return (_attention_flops(layer.self_attn, tgt_len, tgt_len)
            + _attention_flops(layer.cross_attn, tgt_len, src_len)
            + _feed_forward_flops(layer, tgt_len))


def _rnn_forward_parts(model: RNNSeq2Seq, src_len: int, tgt_len: int
                       ) -> tuple[int, int, int]:
    """The RNN baseline's forward FLOPs of one sentence pair: (encoder, decoder, output).

    With G gates (GRU 3, LSTM 4), an RNN layer of hidden size H over n inputs of width
    d_in costs 2 n G H (d_in + H) (input and recurrent products). Then:

        encoder = both directions (H = D/2) of every layer over S tokens
        decoder = bridge (s -> every layer's h_0, and an LSTM's c_0) and c_fix, once
                  + the decoder RNN (H = D, first input [embedding; c_fix], 2D) over T
                  + attention: keys once (general, additive: 2 S D D); per target token
                    additive's W_q h (2 D D), the scores (2 S D) and the context (2 S D)
                  + combine [h; c] -> out (2 T 2D D)
        output  = 2 T D V
    """
    S, T = src_len, tgt_len
    encoder = sum(_rnn_layer_flops(model.encoder, layer, S) for layer in
                  range(model.encoder.num_layers))
    decoder = sum(_rnn_layer_flops(model.decoder, layer, T) for layer in
                  range(model.decoder.num_layers))
    for linear in (model.bridge, model.bridge_cell, model.fixed_context):
        if linear is not None:
            decoder += _linear_flops(linear, 1)
    if model.attention is not None:
        D, score = model.d_model, model.attention.score
        if isinstance(score, GeneralScore | AdditiveScore):
            decoder += 2 * S * D * D  # keys, projected once per sentence
        if isinstance(score, AdditiveScore):
            decoder += 2 * T * D * D  # W_q h
        decoder += 2 * 2 * T * S * D  # scores, then the weighted sum of memory
    decoder += _linear_flops(model.combine, T)
    return encoder, decoder, _linear_flops(model.output, T)


def _rnn_layer_flops(rnn: nn.RNNBase, layer: int, n: int) -> int:
    """One layer of a torch GRU/LSTM over n steps, both directions when bidirectional."""
    gates_hidden, d_in = getattr(rnn, f"weight_ih_l{layer}").shape  # (G H, d_in)
    directions = 2 if rnn.bidirectional else 1
    return directions * 2 * n * gates_hidden * (d_in + rnn.hidden_size)


def format_table(rows: list[tuple[str, object]], header: tuple[str, str] | None = None) -> str:
    """Rows of (label, value) as aligned text: labels left, values right, ints with commas.

    A rule separates a final "total" row (and a header, when given) from the rest.
    """
    cells = [(label, f"{value:,}" if isinstance(value, int) else str(value))
             for label, value in rows]
    if header:
        cells.insert(0, header)
    left = max((len(label) for label, _ in cells), default=0)
    right = max((len(value) for _, value in cells), default=0)
    rule = "-" * (left + 2 + right)
    lines = [f"{label:<{left}}  {value:>{right}}" for label, value in cells]
    if header:
        lines.insert(1, rule)
    if rows and rows[-1][0] == "total":
        lines.insert(len(lines) - 1, rule)
    return "\n".join(lines)
