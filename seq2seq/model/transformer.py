"""The encoder-decoder Transformer: encode, decode, logits; build_model from a config."""

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from seq2seq.model.attention import DecoderCache
from seq2seq.model.layers import DecoderLayer, EncoderLayer, PositionalEncoding, embeddings
from seq2seq.model.protocol import top_k


@dataclass
class Attention:
    """Attention weights returned on request, one (B, H, T_q, T_k) tensor per layer."""

    encoder: list[Tensor] = field(default_factory=list)
    decoder_self: list[Tensor] = field(default_factory=list)
    cross: list[Tensor] = field(default_factory=list)


class Transformer(nn.Module):
    """Vaswani et al. (2017), with pre- or post-norm residual blocks."""

    # What search needs beside the methods (see model/protocol.py); seq2seq.fast's twin
    # shares memory between beams and ranks tokens with a faster kernel.
    beams_share_memory = False
    top_k = staticmethod(top_k)

    def __init__(self, src_vocab: int, tgt_vocab: int, pad_id: int, d_model: int, n_heads: int,
                 d_ff: int, encoder_layers: int, decoder_layers: int, dropout: float,
                 attention_dropout: float, attention: str, pre_norm: bool,
                 tie_embeddings: bool, share_embeddings: bool, max_positions: int):
        super().__init__()
        self.pad_id, self.d_model, self.max_positions = pad_id, d_model, max_positions
        self.src_embed, self.tgt_embed = embeddings(src_vocab, tgt_vocab, d_model, pad_id,
                                                    share_embeddings)
        self.positions = PositionalEncoding(d_model, max_positions)
        self.dropout = nn.Dropout(dropout)
        layer_args = (d_model, n_heads, d_ff, dropout, attention_dropout, attention, pre_norm)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(decoder_layers))
        # Pre-norm stacks need a final norm; post-norm layers already end in one.
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.output = nn.Linear(d_model, tgt_vocab, bias=False)
        self._init_weights()
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        # A list, not a set: a set's order varies between processes and would break seeding.
        shared = self.src_embed is self.tgt_embed
        embeds = [self.tgt_embed] + ([] if shared else [self.src_embed])
        for embed in embeds:
            nn.init.normal_(embed.weight, 0.0, self.d_model**-0.5)
            with torch.no_grad():
                embed.weight[self.pad_id].zero_()

    def embed(self, table: nn.Embedding, ids: Tensor, offset: int = 0) -> Tensor:
        """ids: (B, L) -> (B, L, D): sqrt(D)-scaled embeddings plus positions, dropout."""
        if offset + ids.size(1) > self.max_positions:
            raise ValueError(f"sequence of {offset + ids.size(1)} positions exceeds "
                             f"model.max_positions ({self.max_positions})")
        x = table(ids) * math.sqrt(self.d_model)  # (B, L, D)
        return self.dropout(self.positions(x, offset))

    def encode(self, src: Tensor, src_mask: Tensor, need_weights: bool = False
               ) -> tuple[Tensor, list[Tensor]]:
        """src: (B, S), src_mask: (B, 1, 1, S) -> memory (B, S, D) and per-layer weights."""
        x = self.embed(self.src_embed, src)
        weights = []
        for layer in self.encoder:
            x, w = layer(x, src_mask, need_weights)
            if need_weights:
                weights.append(w)
        return self.encoder_norm(x), weights

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
               cache: DecoderCache | None = None, need_weights: bool = False
               ) -> tuple[Tensor, Attention]:
        """Decoder states for tgt_in.

        tgt_in: (B, T); memory: (B, S, D); src_mask: (B, 1, 1, S); tgt_mask: (B, 1, T, T),
        or None when decoding one token at a time with a cache (positions continue
        from cache.length).  Returns hidden (B, T, D) and the weights when asked.
        """
        offset = cache.length if cache is not None else 0
        x = self.embed(self.tgt_embed, tgt_in, offset)  # (B, T, D)
        attention = Attention()
        for i, layer in enumerate(self.decoder):
            layer_cache = cache.layers[i] if cache is not None else None
            x, self_w, cross_w = layer(x, memory, src_mask, tgt_mask, layer_cache, need_weights)
            if need_weights:
                attention.decoder_self.append(self_w)
                attention.cross.append(cross_w)
        return self.decoder_norm(x), attention

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden: (..., D) -> (..., V)."""
        return self.output(hidden)

    def forward(self, src: Tensor, tgt_in: Tensor, src_mask: Tensor, tgt_mask: Tensor) -> Tensor:
        """Teacher-forced logits: (B, S), (B, T) -> (B, T, V)."""
        memory, _ = self.encode(src, src_mask)
        hidden, _ = self.decode(tgt_in, memory, src_mask, tgt_mask)
        return self.logits(hidden)

    def new_cache(self, capacity: int = 0) -> DecoderCache:
        """An empty key/value cache for incremental decoding, room for `capacity` tokens."""
        return DecoderCache(len(self.decoder), capacity)


def build_model(cfg, src_vocab: int, tgt_vocab: int, pad_id: int, joint_vocab: bool
                ) -> Transformer:
    """Build the model a ModelConfig describes (cfg is read by attribute only).

    Source and target embeddings are shared only with a joint vocabulary.
    """
    return Transformer(
        src_vocab=src_vocab, tgt_vocab=tgt_vocab, pad_id=pad_id, d_model=cfg.d_model,
        n_heads=cfg.n_heads, d_ff=cfg.d_ff, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, attention=cfg.attention,
        pre_norm=cfg.norm == "pre", tie_embeddings=cfg.tie_embeddings,
        share_embeddings=cfg.share_embeddings and joint_vocab,
        max_positions=cfg.max_positions)


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
