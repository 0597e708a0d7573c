"""build_model: the model a ModelConfig describes, Transformer or RNN (`model.arch`)."""

from seq2seq.model import transformer
from seq2seq.model.rnn import RNNSeq2Seq
from seq2seq.model.transformer import Transformer


def build_model(cfg, src_vocab: int, tgt_vocab: int, pad_id: int, joint_vocab: bool
                ) -> Transformer | RNNSeq2Seq:
    """Build the model a ModelConfig describes (cfg is read by attribute only).

    arch "transformer": transformer.build_model. arch "rnn": RNNSeq2Seq with d_model as
    the hidden size, encoder_layers / decoder_layers RNN layers, dropout between layers,
    rnn_cell (gru | lstm) and attention (dot | general | additive | none); n_heads, d_ff,
    attention_dropout and norm are not used. Source and target embeddings are shared only
    with a joint vocabulary.
    """
    if cfg.arch == "transformer":
        return transformer.build_model(cfg, src_vocab, tgt_vocab, pad_id, joint_vocab)
    if cfg.arch != "rnn":
        raise ValueError(f"unknown model.arch {cfg.arch!r}; choose transformer or rnn")
    return RNNSeq2Seq(
        src_vocab=src_vocab, tgt_vocab=tgt_vocab, pad_id=pad_id, d_model=cfg.d_model,
        cell=cfg.rnn_cell, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, dropout=cfg.dropout, attention=cfg.attention,
        tie_embeddings=cfg.tie_embeddings, share_embeddings=cfg.share_embeddings and joint_vocab,
        max_positions=cfg.max_positions)
