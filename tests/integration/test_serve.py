"""`seq2seq serve`: the JSON API through FastAPI's TestClient on the tiny model, the
micro-batcher alone, and the command's own checks."""

import json
import socket
import threading
from concurrent.futures import Future

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.serving.batcher import Busy, MicroBatcher

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install "
                                      "'seq2seq[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from seq2seq.serving.app import Limits, create_app  # noqa: E402
from seq2seq.serving.engine import Served  # noqa: E402

LIMITS = Limits(max_request_bytes=4096, max_sentences=4, max_chars=80, max_beam=4,
                timeout_s=20, batch_wait_ms=2)


@pytest.fixture(scope="module")
def trained(served_tiny):
    return served_tiny


@pytest.fixture(scope="module")
def served(trained):
    return Served.load(trained[0], device="cpu")


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served, LIMITS)) as client:  # `with`: the app's lifespan
        yield client


def post(client, body) -> tuple[int, dict]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post("/translate", content=content)
    return answer.status_code, answer.json()


def test_translations_equal_the_translators(client, served, trained):
    lines = [*trained[1][:3], "  "]  # a blank line gives "", as translate() gives it
    for beam in (1, 3):
        status, answer = post(client, {"text": lines, "beam_size": beam})
        assert status == 200, answer
        assert answer["translations"] == served.translator.translate(lines, beam_size=beam)
        assert len(answer["scores"]) == len(lines) and answer["scores"][-1] == 0
        assert answer["decoding"]["beam_size"] == beam
        assert "nbest" not in answer and "attention" not in answer
    status, answer = post(client, {"text": lines, "beam_size": 1, "length_penalty": 0,
                                   "max_len_ratio": 2})  # integers are numbers too
    assert answer["translations"] == served.translator.translate(
        lines, beam_size=1, length_penalty=0.0, max_len_ratio=2.0), answer
    status, answer = post(client, {"text": lines[0]})  # one string; the checkpoint's beam
    assert answer["translations"] == [served.translator.translate(lines[0])]
    assert answer["decoding"]["beam_size"] == served.translator.decode.beam_size


def test_nbest_lists_and_attention_shapes(client, served, trained):
    lines = trained[1][3:5]
    status, answer = post(client, {"text": lines, "beam_size": 3, "nbest": 3,
                                   "attention": True})
    assert status == 200, answer
    for text, group, best in zip(lines, answer["nbest"], answer["translations"], strict=True):
        assert len(group) == 3 and group[0]["text"] == best
        scores = [h["score"] for h in group]
        assert scores == sorted(scores, reverse=True)
        expected = served.translator.nbest([text], 3, beam_size=3)[0]
        assert [h["text"] for h in group] == [t.text for t in expected]
    for text, maps in zip(lines, answer["attention"], strict=True):
        S, T = len(maps["source"]), len(maps["target_out"])
        assert maps["source"][-1] == "</s>" and maps["target_in"][0] == "<s>"
        assert S == len(served.translator.src_tok.encode([text])[0]) + 1
        for key, rows, cols in (("cross", T, S), ("encoder", S, S), ("decoder_self", T, T)):
            layers = maps[key]
            assert len(layers) == 2 and len(layers[0]) == 4  # 2 layers, 4 heads
            assert all(len(head) == rows and len(head[0]) == cols
                       for layer in layers for head in layer), key
            assert abs(sum(layers[1][2][0]) - 1) < 1e-3  # a row of weights sums to 1
    status, answer = post(client, {"text": [" "], "attention": True})
    assert status == 200 and answer["attention"] == [None]


BAD = [  # (body, status, words the message must have)
    (b'{"text": ["a ."', 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"\xff\xfe", 400, "not UTF-8"),
    (b"[1, 2]", 422, "must be a JSON object"),
    ({"text": []}, 422, "at least one sentence"),
    ({"beam_size": 2}, 422, "text is missing"),
    ({"text": ["a ."], "beam": 2}, 422, "unknown field 'beam'"),
    ({"text": [1]}, 422, "text[0]: input should be a valid string"),
    ({"text": ["a ."], "beam_size": "2"}, 422, "beam_size: input should be a valid integer"),
    ({"text": ["a ."], "beam_size": 0}, 422, "beam size must be between 1"),
    ({"text": ["a ."], "beam_size": 9}, 422, "at most 4 on this server"),
    ({"text": ["a ."], "beam_size": 2, "nbest": 3}, 422, "nbest must be between 1 and the "
                                                         "beam size (2)"),
    ({"text": ["a ."], "length_penalty": -1}, 422, "length penalty must be a finite number"),
    ({"text": ["a ."], "length_penalty": "1"}, 422, "length_penalty: input should be a number"),
    ({"text": ["a ."], "attention": 1}, 422, "attention: input should be a valid boolean"),
    ({"text": ["a ."], "nbest": True}, 422, "nbest: input should be a valid integer"),
    ({"text": ["a ."] * 5}, 413, "5 sentences in one request"),
    ({"text": ["a " * 41]}, 413, "text[0] has 82 characters"),
    ({"text": ["a ."] * 2000}, 413, "over this server's limit of 4096"),
]


@pytest.mark.parametrize("body,status,words", BAD, ids=[w for _, _, w in BAD])
def test_a_bad_request_is_a_4xx_with_one_message_and_the_server_keeps_serving(
        client, body, status, words):
    got, answer = post(client, body)
    assert got == status, answer
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    assert words.lower() in answer["error"].lower(), answer["error"]
    assert post(client, {"text": ["a ."], "beam_size": 1})[0] == 200


def test_a_sentence_longer_than_the_model_reads_is_refused(served):
    limits = Limits(max_chars=10_000, max_request_bytes=100_000)
    with TestClient(create_app(served, limits)) as client:
        status, answer = post(client, {"text": ["cat " * 300]})
    assert status == 413 and "this model reads at most 127" in answer["error"], answer


def test_health_info_and_unknown_paths(client, served):
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    info = client.get("/info").json()
    model = served.translator.model
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["model"]["d_model"] == 32 and info["decode"]["beam_size"] == 2
    assert info["engine"] == "pytorch" and info["attention"] is True
    assert info["limits"]["max_sentences"] == 4
    assert info["examples"] and all(4 <= len(e.split()) <= 12 for e in info["examples"])
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "POST /translate" in missing.json()["error"]
    wrong = client.get("/translate")
    assert wrong.status_code == 405 and list(wrong.json()) == ["error"]
    page = client.get("/")
    assert page.status_code == 200 and "attention explorer" in page.text
    assert '<script id="attention-data" type="application/json">null</script>' in page.text


def test_a_failing_or_slow_batch_answers_its_requests_only(served, monkeypatch):
    release = threading.Event()

    def run(d, texts):  # the model's place: it fails, hangs, or answers at once
        if texts == ["crash"]:
            raise RuntimeError("boom")
        if texts == ["slow"]:
            release.wait(10)
        return [{"translation": t.upper(), "score": 0.0, "nbest": []} for t in texts]

    monkeypatch.setattr(served, "run", run)
    limits = Limits(timeout_s=1.0, batch_wait_ms=0)
    with TestClient(create_app(served, limits)) as client:
        status, answer = post(client, {"text": ["crash"], "beam_size": 1})
        assert status == 500 and "RuntimeError: boom" in answer["error"]
        status, answer = post(client, {"text": ["slow"], "beam_size": 1})
        assert status == 504 and "longer than 1 s" in answer["error"]
        release.set()  # the worker finishes the slow batch; its answer is dropped
        status, answer = post(client, {"text": ["a ."], "beam_size": 1})
        assert status == 200 and answer["translations"] == ["A ."]


def test_the_batcher_groups_jobs_by_key_and_survives_a_failing_batch():
    gate, batches = threading.Event(), []

    def run(key, items):
        gate.wait(5)  # the worker holds the first job until every other one is queued
        batches.append((key, list(items)))
        if "bad" in items:
            raise ValueError("bad item")
        return [f"{key}:{item}" for item in items]

    batcher = MicroBatcher(run, wait_s=0, max_items=4)
    jobs = [("g", [0]), ("a", [1]), ("b", [2]), ("a", [3, 4]), ("a", [5]), ("a", [6]),
            ("c", ["bad"])]
    futures = [batcher.submit(key, items) for key, items in jobs]
    gate.set()
    results = [f.exception(5) or f.result(5) for f in futures]
    batcher.close()
    assert results[1:6] == [["a:1"], ["b:2"], ["a:3", "a:4"], ["a:5"], ["a:6"]]
    assert isinstance(results[6], ValueError)
    # the first "a" batch fills up to four items; "b" waits for its own; the rest in order
    assert batches[1:] == [("a", [1, 3, 4, 5]), ("b", [2]), ("a", [6]), ("c", ["bad"])]
    with pytest.raises(Busy):
        batcher.submit("a", [7])


def test_the_batcher_skips_a_job_cancelled_while_it_waited():
    started, release = threading.Event(), threading.Event()
    seen = []

    def run(key, items):
        seen.append(items)
        started.set()
        release.wait(5)
        return items

    batcher = MicroBatcher(run, wait_s=0, max_items=1)
    first = batcher.submit("k", [1])
    started.wait(5)
    second: Future = batcher.submit("k", [2])
    assert second.cancel()  # its request timed out before the worker reached it
    third = batcher.submit("k", [3])
    release.set()
    assert first.result(5) == [1] and third.result(5) == [3]
    batcher.close()
    assert seen == [[1], [3]]


def test_the_command_refuses_a_busy_port_and_bad_limits(trained, capsys):
    from seq2seq.commands.serving import _is_loopback, serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(Seq2SeqError, match=rf"cannot listen on 127.0.0.1:{port}: address "
                                               "already in use; .* another --port"):
            serve(trained[0], port=port)
    with pytest.raises(Seq2SeqError, match="--max-sentences must be >= 1"):
        serve(trained[0], max_sentences=0)
    with pytest.raises(Seq2SeqError, match="--timeout must be > 0"):
        serve(trained[0], timeout=0)
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.0.2.7")


def test_serving_without_fastapi_names_the_extra(trained, monkeypatch):
    from seq2seq.commands.serving import serve

    monkeypatch.setitem(__import__("sys").modules, "fastapi", None)  # import now fails
    with pytest.raises(Seq2SeqError, match=r"pip install 'seq2seq\[serve\]'"):
        serve(trained[0])


def test_serve_is_a_command_with_its_limits_as_options():
    from typer.testing import CliRunner

    from seq2seq.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--device", "--max-sentences", "--max-chars",
                   "--max-request-bytes", "--max-beam", "--timeout", "--batch-wait-ms"):
        assert option in result.output


@pytest.mark.slow
def test_the_load_script_checks_a_served_subprocess(trained, capsys):
    """bench/serve_load.py end to end: `seq2seq serve` in a subprocess on a free port,
    concurrent clients, every answer against translate()."""
    from bench import serve_load

    code = serve_load.main([str(trained[0]), "--clients", "4", "--requests", "16"])
    out = capsys.readouterr().out
    assert "errors 0, outputs differing from translate() 0" in out, out
    assert code == 0 and "latency ms: p50" in out and "server RSS" in out
