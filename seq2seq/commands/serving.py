"""`serve`: a translation server (JSON API and the attention explorer page) on FastAPI and
uvicorn, an optional extra (`pip install 'seq2seq[serve]'`)."""

import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import model_path
from seq2seq.errors import Seq2SeqError


def serve(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint written by `train` (*.pt), its run directory (uses best.pt), or a "
             "folder written by `export` (runs on CTranslate2, without attention maps).",
        callback=model_path, metavar="CHECKPOINT")],
    host: Annotated[str, typer.Option(
        help="Address to listen on; the default is this machine only. Any other address "
             "lets other machines in: the server has no authentication.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    max_sentences: Annotated[int, typer.Option(help="The most sentences in one request.")] = 64,
    max_chars: Annotated[int, typer.Option(help="The most characters in one sentence.")] = 1000,
    max_request_bytes: Annotated[int, typer.Option(
        help="The largest request body, in bytes.")] = 262144,
    max_beam: Annotated[int, typer.Option(help="The largest beam_size a request may ask for."
                                          )] = 16,
    timeout: Annotated[float, typer.Option(
        help="Seconds a request may take before it is answered 504.")] = 30.0,
    batch_wait_ms: Annotated[float, typer.Option(
        help="Milliseconds a request waits for others with the same decoding options to "
             "share its batch.")] = 5.0,
    max_batch: Annotated[int, typer.Option(
        help="The most sentences in one batch of requests.")] = 64,
) -> None:
    """Serve a model: POST /translate (JSON), GET /health, GET /info, and at / a page to
    translate sentences and explore their attention."""
    from seq2seq.serving import require_server

    require_server()
    import uvicorn

    from seq2seq.serving.app import Limits, create_app
    from seq2seq.serving.engine import Served

    limits = Limits(max_request_bytes, max_sentences, max_chars, max_beam, timeout,
                    batch_wait_ms, max_batch)
    _check_limits(limits)
    if not 0 <= port <= 65535:
        raise Seq2SeqError(f"--port must be between 0 and 65535, got {port}")
    if not _is_loopback(host):
        typer.echo(f"warning: --host {host} lets other machines reach this server, which has "
                   "no authentication; use 127.0.0.1 unless that is what you want", err=True)
    sock = _listen(host, port)  # before the model loads: a port in use fails at once
    try:
        served = Served.load(checkpoint, device)
    except BaseException:
        sock.close()
        raise
    app = create_app(served, limits)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {checkpoint} at http://{shown}:{bound}/ (the explorer page; API: "
               "POST /translate, GET /health, GET /info); Ctrl-C stops", err=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5,
                            limit_concurrency=1024)
    uvicorn.Server(config).run(sockets=[sock])


def _check_limits(limits) -> None:
    for name in ("max_sentences", "max_chars", "max_request_bytes", "max_beam", "max_batch"):
        if getattr(limits, name) < 1:
            raise Seq2SeqError(f"--{name.replace('_', '-')} must be >= 1, got "
                               f"{getattr(limits, name)}")
    if not limits.timeout_s > 0:
        raise Seq2SeqError(f"--timeout must be > 0 seconds, got {limits.timeout_s}")
    if not 0 <= limits.batch_wait_ms <= 1000:
        raise Seq2SeqError(f"--batch-wait-ms must be between 0 and 1000, got "
                           f"{limits.batch_wait_ms}")


def _is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's own."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: what it resolves to
        try:
            found = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in found)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why there is none."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except OSError as error:
        raise Seq2SeqError(f"--host {host}: cannot resolve it ({error.strerror or error})"
                           ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        why = error.strerror or str(error)
        raise Seq2SeqError(f"cannot listen on {host}:{port}: {why.lower()}; stop what runs "
                           "there or pick another --port") from None
    return sock
