"""seq2seq: a small Transformer translation trainer."""
