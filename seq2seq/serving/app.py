"""The translation server's ASGI app (FastAPI): POST /translate, GET /health, GET /info,
and the attention explorer's page at /.

Every request is checked before it reaches the model (body size, JSON, fields, sentence
count and length, decoding options); a bad one is answered with a 4xx status and
{"error": "one line saying what to fix"}, and nothing a request sends can stop the
server. The model itself runs on the micro-batcher's one worker thread.
"""

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

from seq2seq.errors import Seq2SeqError
from seq2seq.serving.batcher import Busy, MicroBatcher
from seq2seq.serving.engine import Decoding, Served


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (the `serve` options of the same names)."""

    max_request_bytes: int = 256 * 1024  # a request body larger than this is refused (413)
    max_sentences: int = 64  # sentences per request
    max_chars: int = 1000  # characters per sentence
    max_beam: int = 16  # beam_size per request
    timeout_s: float = 30.0  # a request not answered by then gets 504
    batch_wait_ms: float = 5.0  # how long a batch waits for more requests
    max_batch: int = 64  # sentences per batch of requests


def _number(value):
    """A JSON number (an integer too) as a float; strings and booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("input should be a number")
    return float(value)


Number = Annotated[float, BeforeValidator(_number)]


class TranslateRequest(BaseModel):
    """The body of POST /translate (text may also be one string)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: list[str]  # the sentences to translate
    beam_size: int | None = None  # 1 = greedy; None: the checkpoint's decode.beam_size
    nbest: int = 1  # the n best translations of each (<= beam_size)
    length_penalty: Number | None = None  # GNMT alpha; None: the checkpoint's
    max_len_ratio: Number | None = None  # output tokens <= ratio * source tokens + 10
    attention: bool = False  # add every layer's attention weights of each best translation


FIELDS = ", ".join(TranslateRequest.model_fields)


class ApiError(Exception):
    """A request the server refuses: its status and one line saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(served: Served, limits: Limits = Limits()) -> FastAPI:
    """The app serving `served` within `limits`; its batcher's worker starts now and stops
    when the app shuts down."""
    from seq2seq.inspection.attention_maps import page_html

    batcher = MicroBatcher(served.run, limits.batch_wait_ms / 1000, limits.max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title="seq2seq", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # the docs pages fetch scripts from the web
    app.state.batcher, app.state.served, app.state.limits = batcher, served, limits
    page = page_html(None)
    _add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    async def explorer() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/favicon.ico")
    async def favicon() -> Response:  # browsers ask for one; a 404 would be logged as an error
        return Response(status_code=204)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "waiting": batcher.waiting, "batches": batcher.batches}

    @app.get("/info")
    async def info() -> dict:
        return {**served.info, "attention": served.has_attention, "limits": asdict(limits)}

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        try:
            answer = await asyncio.wait_for(_answer(request, served, batcher, limits),
                                            limits.timeout_s)
        except TimeoutError:
            raise ApiError(504, f"the request took longer than {limits.timeout_s:g} s; send "
                                "fewer or shorter sentences (or raise serve --timeout)") from None
        return JSONResponse(answer)

    return app


async def _answer(request: Request, served: Served, batcher: MicroBatcher, limits: Limits
                  ) -> dict:
    """Read and check the request, translate it in a batch, and shape the answer."""
    body = await _read_body(request, limits.max_request_bytes)
    req = _validate(_parse(body))
    texts = req.text
    _check_texts(texts, served, limits)
    try:
        d = served.decoding(req.beam_size, req.nbest, req.length_penalty, req.max_len_ratio,
                            req.attention, limits.max_beam)
    except Seq2SeqError as error:
        raise ApiError(422, str(error)) from None
    try:
        future = batcher.submit(d, texts)
    except Busy as error:
        raise ApiError(503, f"the server is busy ({error}); try again shortly") from None
    try:  # a timeout cancels the future, and the batcher then skips the job
        results = await asyncio.wrap_future(future)
    except Busy as error:
        raise ApiError(503, str(error)) from None
    except Seq2SeqError as error:
        raise ApiError(422, str(error)) from None
    except Exception as error:  # the batcher printed its traceback
        raise ApiError(500, f"internal error while translating ({type(error).__name__}: "
                            f"{error}); the server's log has the details") from None
    return _shape(results, d)


def _shape(results: list[dict], d: Decoding) -> dict:
    answer = {"translations": [r["translation"] for r in results],
              "scores": [round(r["score"], 6) for r in results],
              "decoding": {"beam_size": d.beam_size, "length_penalty": d.length_penalty,
                           "max_len_ratio": d.max_len_ratio}}
    if d.nbest > 1:
        answer["nbest"] = [[{"text": h["text"], "score": round(h["score"], 6),
                             "log_prob": round(h["log_prob"], 6)} for h in r["nbest"]]
                           for r in results]
    if d.attention:
        answer["attention"] = [r["attention"] for r in results]
    return answer


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, _too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (f"the request body has {size}{'+' * (size > limit)} bytes, over this server's "
            f"limit of {limit} (serve --max-request-bytes); send fewer sentences per request")


def _parse(body: bytes):
    if not body.strip():
        raise ApiError(400, 'the request body is empty; send JSON such as {"text": ["a '
                            'sentence"]}')
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the request body is not UTF-8 (byte {error.start}); send JSON "
                            "text in UTF-8") from None
    except json.JSONDecodeError as error:
        raise ApiError(400, f"the request body is not valid JSON: {error.msg} at line "
                            f"{error.lineno}, column {error.colno}") from None


def _validate(payload) -> TranslateRequest:
    """The request's fields, or 422 naming the first bad one."""
    if not isinstance(payload, dict):
        raise ApiError(422, f'the request body must be a JSON object such as {{"text": ["a '
                            f'sentence"]}}, not {type(payload).__name__}')
    if isinstance(payload.get("text"), str):  # one sentence as a plain string
        payload = {**payload, "text": [payload["text"]]}
    try:
        return TranslateRequest.model_validate(payload)
    except ValidationError as error:
        raise ApiError(422, _first_problem(error)) from None


def _first_problem(error: ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    where = where.lstrip(".") or "the request"
    if first["type"] == "extra_forbidden":
        message = f"unknown field {where!r}; the fields are {FIELDS}"
    elif first["type"] == "missing":
        message = f'{where} is missing; send at least {{"text": ["a sentence"]}}'
    else:
        shown = json.dumps(first.get("input"), ensure_ascii=False)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        why = first["msg"].removeprefix("Value error, ")
        message = f"{where}: {why[0].lower()}{why[1:]}, got {shown}"
    more = len(problems) - 1
    return message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _check_texts(texts: list[str], served: Served, limits: Limits) -> None:
    """Sentence count and length, in characters and in the model's pieces (413)."""
    if not texts:
        raise ApiError(422, "text is empty; give at least one sentence")
    if len(texts) > limits.max_sentences:
        raise ApiError(413, f"{len(texts)} sentences in one request, over this server's limit "
                            f"of {limits.max_sentences} (serve --max-sentences); split them")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise ApiError(413, f"text[{i}] has {len(text)} characters, over this server's "
                                f"limit of {limits.max_chars} (serve --max-chars)")
    limit = served.max_tokens
    for i, count in enumerate(served.token_counts(texts)):
        if count > limit:
            raise ApiError(413, f"text[{i}] has {count} subword pieces; this model reads at "
                                f"most {limit}; split the sentence")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, whatever raised it, as {"error": "..."} with its status."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404:
            message = (f"no such page {request.url.path}; the server answers GET /, /health, "
                       "/info and POST /translate")
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"error": message}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(error).__name__}); the "
                                      "server's log has the details"}, status_code=500)
