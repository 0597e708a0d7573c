"""An RNN encoder-decoder baseline (GRU or LSTM), with or without attention.

It has the Transformer's interface (the Seq2SeqModel of model/protocol.py, and forward),
so the data, training loop, search and CLI run it unchanged. Use it to measure what
attention buys: `attention: none` and the attentional kinds share every module except
the attention itself.

Encoder: embeddings (scaled by sqrt(D), as in the Transformer) into a bidirectional
RNN with D/2 units per direction, run on packed sequences so padding cannot change a
result. memory = the top layer's states, both directions concatenated: (B, S, D).
The final encoder state s = [forward state at the last real token; backward state at
the first token], (B, D); it is read back from memory, so decode needs nothing else.

Decoder at target step t (Luong et al. 2015 without input feeding, plus Cho et al.'s
fixed context on the input):

    s_0     = tanh(W_b s), one (B, D) slice per decoder layer (an LSTM's cell likewise)
    c_fix   = tanh(W_f s)                          the same (B, D) vector at every step
    h_t     = RNN([embed(y_{t-1}); c_fix], h_{t-1})    top layer: (B, D)
    c_t     = sum_j a_tj memory_j, a_t = softmax(score(h_t, memory_j)) over real tokens;
              c_t = c_fix with `attention: none` (Sutskever / Cho: the source reaches the
              decoder only through s)
    out_t   = dropout(tanh(W_c [h_t; c_t]))        what decode returns, (B, T, D)
    logits  = W_out out_t                          W_out tied to the target embedding

No input feeding: the RNN's input does not depend on attention, so teacher forcing runs
the decoder RNN over all T positions in one call and attends for all T at once, and a
cached step-by-step decode gives the same numbers as a full one.

Scores (single head; parameters and initialisation from attention.py with H = 1):
    dot       h.k                      (Luong "dot")
    general   h W k                    (Luong "general"; W starts as I / sqrt(D))
    additive  v.tanh(W_q h + W_k k)    (Bahdanau; memory (B, T, S, D) when teacher-forced)
Keys are projected once per sentence (W^T k, or W_k k) and kept in the cache, so a
decoding step costs O(S D) for attention on top of the RNN.
"""

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.model.attention import AdditiveScore, GeneralScore, make_score
from seq2seq.model.layers import embeddings
from seq2seq.model.protocol import top_k
from seq2seq.model.transformer import Attention

RNN_SCORES = ("dot", "general", "additive", "none")
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}

State = Tensor | tuple[Tensor, Tensor]  # GRU: h (L, B, D); LSTM: (h, c), each (L, B, D)


class SourceAttention(nn.Module):
    """One-head attention of decoder states over encoder states, keys projected once."""

    def __init__(self, score: str, d_model: int):
        super().__init__()
        self.score = make_score(score, 1, d_model)  # DotScore, GeneralScore or AdditiveScore

    def keys(self, memory: Tensor) -> Tensor:
        """memory: (B, S, D) -> keys (B, 1, S, D), projected for the score."""
        k = memory.unsqueeze(1)  # (B, 1, S, D)
        if isinstance(self.score, GeneralScore):
            return k @ self.score.weight.transpose(-2, -1)  # (B, 1, S, D): q W k^T = q (k W^T)^T
        if isinstance(self.score, AdditiveScore):
            return k @ self.score.w_k  # (B, 1, S, D)
        return k

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, src_mask: Tensor
                ) -> tuple[Tensor, Tensor]:
        """query: (B, T, D); keys: (B, 1, S, D) from keys(); memory: (B, S, D);
        src_mask: (B, 1, 1, S) -> context (B, T, D), weights (B, 1, T, S)."""
        q = query.unsqueeze(1)  # (B, 1, T, D)
        if isinstance(self.score, AdditiveScore):
            score = self.score
            hidden = ((q @ score.w_q).unsqueeze(3) + keys.unsqueeze(2)).tanh()  # (B, 1, T, S, D)
            scores = (hidden @ score.v.unsqueeze(1)).squeeze(-1)  # (B, 1, T, S)
        else:
            scores = q @ keys.transpose(-2, -1)  # (B, 1, T, S)
        weights = scores.masked_fill(~src_mask, float("-inf")).softmax(dim=-1)  # (B, 1, T, S)
        context = (weights @ memory.unsqueeze(1)).squeeze(1)  # (B, T, D)
        return context, weights


class RNNCache:
    """What incremental decoding carries between decode calls; the first call fills it.

    state: the decoder's recurrent state, (L, B, D) or an LSTM's (h, c); fixed: c_fix
    (B, D); keys: projected attention keys (B, 1, S, D), None without attention.
    """

    def __init__(self):
        self.state: State | None = None
        self.fixed: Tensor | None = None
        self.keys: Tensor | None = None
        self.length = 0  # target positions already decoded

    def select(self, index: Tensor, cross_index: Tensor | None = None) -> None:
        """Keep and reorder batch rows, e.g. surviving beams.  index: (B',) long.

        cross_index is not used: every row holds its own keys (the RNN's beams do not
        share memory)."""
        if self.state is None:
            return
        if isinstance(self.state, tuple):
            self.state = tuple(part.index_select(1, index) for part in self.state)
        else:
            self.state = self.state.index_select(1, index)  # (L, B', D)
        self.fixed = self.fixed.index_select(0, index)  # (B', D)
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)  # (B', 1, S, D)

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Beam search forks: rows dst continue from rows src (same sentence, no overlap).

        Only the recurrent state differs between beams; c_fix and keys are the sentence's.
        """
        if self.state is None:
            return
        for part in self.state if isinstance(self.state, tuple) else (self.state,):
            part[:, dst] = part[:, src]  # (L, B, D)


class RNNSeq2Seq(nn.Module):
    """Bidirectional RNN encoder, RNN decoder, optional attention (see the module docstring)."""

    beams_share_memory = False  # search copies memory for every beam (see model/protocol.py)
    top_k = staticmethod(top_k)

    def __init__(self, src_vocab: int, tgt_vocab: int, pad_id: int, d_model: int, cell: str,
                 encoder_layers: int, decoder_layers: int, dropout: float, attention: str,
                 tie_embeddings: bool, share_embeddings: bool, max_positions: int):
        super().__init__()
        _check(cell, attention, d_model)
        self.pad_id, self.d_model, self.max_positions = pad_id, d_model, max_positions
        self.src_embed, self.tgt_embed = embeddings(src_vocab, tgt_vocab, d_model, pad_id,
                                                    share_embeddings)
        self.dropout = nn.Dropout(dropout)
        rnn = CELLS[cell]
        self.encoder = rnn(d_model, d_model // 2, encoder_layers, batch_first=True,
                           dropout=dropout if encoder_layers > 1 else 0.0, bidirectional=True)
        self.bridge = nn.Linear(d_model, decoder_layers * d_model)  # s -> h_0 of every layer
        self.bridge_cell = nn.Linear(d_model, decoder_layers * d_model) if cell == "lstm" else None
        self.fixed_context = nn.Linear(d_model, d_model)  # s -> c_fix
        self.decoder = rnn(2 * d_model, d_model, decoder_layers, batch_first=True,
                           dropout=dropout if decoder_layers > 1 else 0.0)
        self.attention = SourceAttention(attention, d_model) if attention != "none" else None
        self.combine = nn.Linear(2 * d_model, d_model)  # [h_t; c_t] -> out_t
        self.output = nn.Linear(d_model, tgt_vocab, bias=False)
        for embed in dict.fromkeys([self.src_embed, self.tgt_embed]):  # once each, fixed order
            nn.init.normal_(embed.weight, 0.0, d_model**-0.5)
            with torch.no_grad():
                embed.weight[pad_id].zero_()
        if tie_embeddings:  # out_t has the embedding width D, so no projection is needed
            self.output.weight = self.tgt_embed.weight

    def embed(self, table: nn.Embedding, ids: Tensor) -> Tensor:
        """ids: (B, L) -> (B, L, D): sqrt(D)-scaled embeddings, dropout."""
        return self.dropout(table(ids) * math.sqrt(self.d_model))  # (B, L, D)

    def encode(self, src: Tensor, src_mask: Tensor, need_weights: bool = False
               ) -> tuple[Tensor, list[Tensor]]:
        """src: (B, S), src_mask: (B, 1, 1, S) -> memory (B, S, D) and [] (no self-attention).

        Real tokens must come first in each row (padding at the end), as batches build them.
        """
        x = self.embed(self.src_embed, src)  # (B, S, D)
        lengths = source_lengths(src_mask).cpu()  # (B,): packing wants them on the CPU
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(states, batch_first=True, total_length=src.size(1))
        return memory, []  # memory (B, S, D), zero at padding

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
               cache: RNNCache | None = None, need_weights: bool = False
               ) -> tuple[Tensor, Attention]:
        """Decoder outputs for tgt_in, continuing from the cache when one is given.

        tgt_in: (B, T); memory: (B, S, D); src_mask: (B, 1, 1, S); tgt_mask is ignored (a
        recurrence is causal). Returns out (B, T, D) and, when need_weights and there is
        attention, Attention(cross=[(B, 1, T, S)]); otherwise an empty Attention.
        """
        cache = cache if cache is not None else RNNCache()  # full decoding: a throwaway one
        if cache.state is None:
            cache.state, cache.fixed, cache.keys = self._start(memory, src_mask)
        B, T = tgt_in.shape
        fixed = cache.fixed.unsqueeze(1).expand(B, T, -1)  # (B, T, D)
        x = torch.cat([self.embed(self.tgt_embed, tgt_in), fixed], dim=-1)  # (B, T, 2D)
        states, cache.state = self.decoder(x, cache.state)  # (B, T, D)
        cache.length += T
        if self.attention is None:
            context, weights = fixed, None
        else:
            context, weights = self.attention(states, cache.keys, memory, src_mask)  # (B, T, D)
        both = torch.cat([states, context], dim=-1)  # (B, T, 2D)
        out = self.dropout(torch.tanh(self.combine(both)))  # (B, T, D)
        if need_weights and weights is not None:
            return out, Attention(cross=[weights])
        return out, Attention()

    def _start(self, memory: Tensor, src_mask: Tensor
               ) -> tuple[State, Tensor, Tensor | None]:
        """memory: (B, S, D), src_mask: (B, 1, 1, S) -> the decoder's initial state (L, B, D)
        (an LSTM's: (h, c)), c_fix (B, D) and attention keys (B, 1, S, D) or None."""
        s = final_state(memory, src_mask)  # (B, D)
        h = self._per_layer(self.bridge, s)  # (L, B, D)
        state = h if self.bridge_cell is None else (h, self._per_layer(self.bridge_cell, s))
        keys = self.attention.keys(memory) if self.attention is not None else None
        return state, torch.tanh(self.fixed_context(s)), keys

    def _per_layer(self, linear: nn.Linear, s: Tensor) -> Tensor:
        """s: (B, D) -> tanh(linear(s)) as (L, B, D), one slice per decoder layer."""
        h = torch.tanh(linear(s)).view(s.size(0), -1, self.d_model)  # (B, L, D)
        return h.transpose(0, 1).contiguous()  # (L, B, D)

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden: (..., D) -> (..., V)."""
        return self.output(hidden)

    def forward(self, src: Tensor, tgt_in: Tensor, src_mask: Tensor,
                tgt_mask: Tensor | None) -> Tensor:
        """Teacher-forced logits: (B, S), (B, T) -> (B, T, V)."""
        memory, _ = self.encode(src, src_mask)
        hidden, _ = self.decode(tgt_in, memory, src_mask, tgt_mask)
        return self.logits(hidden)

    def new_cache(self, capacity: int = 0) -> RNNCache:
        """An empty cache for incremental decoding (its size does not grow with length)."""
        return RNNCache()


def source_lengths(src_mask: Tensor) -> Tensor:
    """src_mask: (B, 1, 1, S) -> real tokens per row (B,) long, at least 1."""
    return src_mask.flatten(1).sum(dim=1).clamp(min=1)  # (B,)


def final_state(memory: Tensor, src_mask: Tensor) -> Tensor:
    """s = [forward state at the last real token; backward state at the first]: (B, D).

    memory: (B, S, D), forward direction in the first D/2 features; src_mask: (B, 1, 1, S).
    """
    half = memory.size(-1) // 2
    last = source_lengths(src_mask) - 1  # (B,)
    rows = torch.arange(memory.size(0), device=memory.device)  # (B,)
    return torch.cat([memory[rows, last, :half], memory[:, 0, half:]], dim=-1)  # (B, D)


def _check(cell: str, attention: str, d_model: int) -> None:
    if cell not in CELLS:
        raise ValueError(f"unknown RNN cell {cell!r}; choose one of {', '.join(CELLS)}")
    if attention not in RNN_SCORES:
        raise ValueError(f"attention {attention!r} is not available to the RNN; choose one of "
                         f"{', '.join(RNN_SCORES)}")
    if d_model % 2:
        raise ValueError(f"the RNN needs an even d_model (the bidirectional encoder gives each "
                         f"direction half), got {d_model}")
