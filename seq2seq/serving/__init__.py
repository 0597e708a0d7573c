"""The translation server (`seq2seq serve`): engine.py holds the model, batcher.py batches
concurrent requests onto one worker thread, app.py is the FastAPI app; the page it serves
at / is the attention explorer (seq2seq/inspection/explorer.html)."""

from seq2seq.errors import Seq2SeqError


def require_server() -> None:
    """FastAPI and uvicorn are an optional extra: their absence is one line saying so."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise Seq2SeqError(f"serving needs FastAPI and uvicorn ({error.name} is not "
                           "installed): pip install 'seq2seq[serve]'") from None
