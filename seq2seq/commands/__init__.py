"""The commands behind `seq2seq`, one module per stage: each a plain function with Typer
annotations that parses, loads, and calls the library; cli.py registers them."""
