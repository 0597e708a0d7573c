"""The model side: masks, attention, layers, the Transformer.

Shape legend used in every comment of this package:
    B batch, S source length, T target length, D model width,
    H heads, K head width (D / H), F feed-forward width, V vocabulary.

This package imports torch only: never the tokenizer, data loading, sacrebleu or typer.
"""
