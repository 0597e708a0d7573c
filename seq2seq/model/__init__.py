"""The model side: masks, attention, layers, the Transformer, the RNN baseline, and the
protocol search relies on (protocol.py). This is the plain reference path; seq2seq/fast
holds faster twins of some of its modules.

Shape legend used in every comment of this package:
    B batch, S source length, T target length, D model width,
    H heads, K head width (D / H), F feed-forward width, V vocabulary.

This package imports torch only: never the tokenizer, data loading, sacrebleu or typer.
"""
