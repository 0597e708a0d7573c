"""Export to CTranslate2 and translate on it: the same network, the same search, the same
command line; and the one-line refusals."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from seq2seq.checkpoint import (
    build_checkpoint,
    checkpoint_config,
    load_checkpoint,
    rebuild,
    save_checkpoint,
)
from seq2seq.config import load_config
from seq2seq.data import make_batch, read_lines
from seq2seq.loss import TeacherForcedLoss
from seq2seq.metrics import score
from seq2seq.model.build import build_model
from seq2seq.tokenizer import train_tokenizer
from seq2seq.translate import Translator
from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli

ct2 = pytest.importorskip("ctranslate2", reason="the ctranslate2 extra is not installed "
                          "(pip install 'seq2seq[ctranslate2]')")

from seq2seq.engines import MANIFEST, is_export_dir, load_translator  # noqa: E402
from seq2seq.engines.ct2 import CT2Model, CT2Translator  # noqa: E402
from seq2seq.engines.ct2_export import export_ctranslate2  # noqa: E402

STEPS = 100  # full-batch steps: the 40 pairs are learnt by heart (outputs peaked, BLEU high)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (torch's and so CTranslate2's here), and a busy
    machine hurts them least there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> tuple[Path, Path]:
    """A tiny model that has learnt the 40 pairs of a toy slice's dev.* by heart (about two
    seconds), as a checkpoint: (its path, the slice). Its outputs are peaked, so float
    rounding cannot flip a near-tie, and its BLEU is high, so a BLEU drop shows."""
    tmp = tmp_path_factory.mktemp("ct2")
    data = write_slice(tmp)
    config = load_config(tiny_config_yaml(tmp, data))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.0))
    tok = train_tokenizer(read_lines(data / "train.src") + read_lines(data / "train.tgt"), 120,
                          threads=1)
    torch.manual_seed(0)
    model = build_model(config.model, tok.vocab_size, tok.vocab_size, tok.pad_id, True)
    pairs = [tok.encode(read_lines(data / f"dev.{side}")) for side in ("src", "tgt")]
    b = make_batch(*pairs, tok.pad_id, tok.bos_id, tok.eos_id)
    loss_fn = TeacherForcedLoss(model.train(), label_smoothing=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(STEPS):
        loss, _ = loss_fn(b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask)
        opt.zero_grad()
        (loss / b.n_tokens).backward()
        opt.step()
    path = tmp / "best.pt"
    save_checkpoint(build_checkpoint(config, model.eval(), tok, tok, STEPS, 0, {}), path)
    return path, data


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("exports") / "f32"
    export_ctranslate2(trained[0], folder)
    return folder


def both(trained, folder: Path) -> tuple[Translator, CT2Translator]:
    ours = Translator.from_checkpoint(trained[0], "cpu")
    theirs = load_translator(folder, "cpu", threads=1)
    assert isinstance(theirs, CT2Translator)
    return ours, theirs


def test_export_folder_holds_what_translating_needs(trained, exported):
    assert is_export_dir(exported)
    names = {p.name for p in exported.iterdir()}
    assert {"model.bin", "config.json", "spm.model", MANIFEST} <= names
    theirs = CT2Translator.from_dir(exported, "cpu")
    state = load_checkpoint(trained[0])
    assert theirs.manifest["checkpoint_checksum"] == state["checksum"]
    assert theirs.decode == checkpoint_config(state).decode  # the same defaults


def test_greedy_is_token_identical(trained, exported):
    ours, theirs = both(trained, exported)
    lines = read_lines(trained[1] / "dev.src")
    a = ours.nbest(lines, beam_size=1, length_penalty=1.0)
    b = theirs.nbest(lines, beam_size=1, length_penalty=1.0)
    assert [g[0].tokens for g in a] == [g[0].tokens for g in b]
    assert sum(g[0].eos for g in a) >= 0.9 * len(lines)  # trained: outputs end with EOS
    for x, y in zip(a, b, strict=True):
        assert y[0].eos == x[0].eos
        assert y[0].log_prob == pytest.approx(x[0].log_prob, abs=1e-3)
        assert y[0].score == pytest.approx(x[0].score, abs=1e-3)


def test_beam_matches_and_bleu_within_a_tenth(trained, exported):
    ours, theirs = both(trained, exported)
    lines, refs = read_lines(trained[1] / "dev.src"), read_lines(trained[1] / "dev.tgt")
    a = ours.nbest(lines, 3, beam_size=5)
    b = theirs.nbest(lines, 3, beam_size=5)
    same = sum(x[0].tokens == y[0].tokens for x, y in zip(a, b, strict=True))
    assert same >= 0.95 * len(lines)
    bleu = [score([g[0].text for g in r], refs, metrics=("bleu",)).bleu for r in (a, b)]
    assert abs(bleu[0] - bleu[1]) <= 0.1
    for x, y in zip(a, b, strict=True):  # n-best lists: best first, our scores
        assert [t.score for t in y] == sorted((t.score for t in y), reverse=True)
        if x[0].tokens == y[0].tokens:
            assert y[0].score == pytest.approx(x[0].score, abs=1e-3)


def test_beam_hypotheses_are_ranked_by_our_length_penalty():
    """CTranslate2's beam scores (log-prob / length, EOS counted) become our log_prob and
    GNMT score, and its finished hypotheses are re-ranked by ours."""
    model = CT2Model.__new__(CT2Model)  # only the piece maps: no engine needed
    model.tgt_ids, model.eos_piece = {"a": 5, "b": 6, "</s>": 3}, "</s>"
    result = SimpleNamespace(hypotheses=[["a", "b", "b", "</s>"], ["a", "</s>"], ["b", "b"]],
                             scores=[-0.6, -1.0, -2.0])  # raw -2.4, -2.0, -4.0
    best = model.hypotheses(result, 5, 0.0, 3)  # alpha 0: the raw log-probability ranks
    assert [h.tokens for h in best] == [[5], [5, 6, 6], [6, 6]]
    assert [h.log_prob for h in best] == pytest.approx([-2.0, -2.4, -4.0])
    assert [h.eos for h in best] == [True, True, False]
    best = model.hypotheses(result, 5, 1.0, 1)  # -2.4 / (9/6) beats -2.0 / (7/6)
    assert [h.tokens for h in best] == [[5, 6, 6]]
    assert best[0].score == pytest.approx(-2.4 / 1.5)


def test_each_sentence_keeps_its_own_length_limit(trained, tmp_path):
    """A random model runs to the limits, which differ within a batch: CTranslate2's first
    pass stops at the shortest, and the others run again to their own."""
    path = _variant(trained, tmp_path, norm="pre")
    export_ctranslate2(path, tmp_path / "out")
    lines = read_lines(trained[1] / "dev.src")[:12]
    ours = Translator.from_checkpoint(path, "cpu").nbest(lines, beam_size=1)
    theirs = load_translator(tmp_path / "out", "cpu").nbest(lines, beam_size=1)
    assert [g[0].tokens for g in ours] == [g[0].tokens for g in theirs]
    lengths = {len(g[0].tokens) for g in ours if not g[0].eos}
    assert len(lengths) > 2  # several sentences ran to several limits


def test_int8_within_one_bleu(trained, exported, tmp_path):
    export_ctranslate2(trained[0], tmp_path / "int8", "int8")
    assert (tmp_path / "int8/model.bin").stat().st_size < (exported / "model.bin").stat().st_size
    lines, refs = read_lines(trained[1] / "dev.src"), read_lines(trained[1] / "dev.tgt")
    ours = Translator.from_checkpoint(trained[0], "cpu").translate(lines, beam_size=1)
    int8 = load_translator(tmp_path / "int8", "cpu").translate(lines, beam_size=1)
    bleu = [score(hyps, refs, metrics=("bleu",)).bleu for hyps in (ours, int8)]
    assert bleu[0] > 80 and abs(bleu[0] - bleu[1]) <= 1.0
    assert sum(a == b for a, b in zip(ours, int8, strict=True)) >= 0.9 * len(lines)


def _variant(trained, tmp: Path, **model) -> Path:
    """A randomly initialised model of another shape, as a checkpoint beside `tmp`."""
    state = load_checkpoint(trained[0])
    config = checkpoint_config(state)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **model))
    _, src_tok, tgt_tok, _ = rebuild(state, torch.device("cpu"))
    torch.manual_seed(3)
    net = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size, src_tok.pad_id,
                      joint_vocab=True)
    path = tmp / "variant.pt"
    save_checkpoint(build_checkpoint(config, net, src_tok, tgt_tok, 0, 0, {}), path)
    return path


@pytest.mark.parametrize("model", [
    dict(norm="post"), dict(norm="pre", tie_embeddings=False, share_embeddings=False),
    dict(norm="post", tie_embeddings=False), dict(attention="dot")])
def test_every_variant_scores_as_ours(trained, tmp_path, model):
    """CTranslate2's teacher-forced log-probabilities are the model's own, token by token."""
    path = _variant(trained, tmp_path, **model)
    export_ctranslate2(path, tmp_path / "out")
    net, src_tok, tgt_tok, _ = rebuild(load_checkpoint(path), torch.device("cpu"))
    src = src_tok.encode(read_lines(trained[1] / "dev.src")[:8])
    tgt = tgt_tok.encode(read_lines(trained[1] / "dev.tgt")[:8])
    b = make_batch(src, tgt, src_tok.pad_id, tgt_tok.bos_id, tgt_tok.eos_id)
    with torch.no_grad():
        logp = net(b.src, b.tgt_in, b.src_mask, b.tgt_mask).log_softmax(-1)  # (B, T, V)
    ours = logp.gather(2, b.tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
    engine = ct2.Translator(str(tmp_path / "out"), device="cpu")
    results = engine.score_batch([src_tok.pieces(s) for s in src],
                                 [tgt_tok.pieces(t) for t in tgt])
    for row, (t, result) in enumerate(zip(tgt, results, strict=True)):
        assert len(result.log_probs) == len(t) + 1  # EOS scored too
        torch.testing.assert_close(torch.tensor(result.log_probs), ours[row, : len(t) + 1],
                                   atol=2e-4, rtol=1e-4)


def test_translate_dir_is_one_argument(trained, exported, capfd, monkeypatch):
    ckpt, data = trained
    args = ("-i", data / "dev.src", "--beam-size", "5", "--nbest", "2", "--format", "tsv")
    ours = cli(capfd, monkeypatch, "translate", ckpt, *args)
    theirs = cli(capfd, monkeypatch, "translate", exported, *args)
    assert ours.code == theirs.code == 0, theirs.err
    rows = [[line.split("\t")[:3] for line in r.out.splitlines()] for r in (ours, theirs)]
    assert len(rows[1]) == 80
    same = sum(x == y for x, y in zip(*rows, strict=True) if x[1] == "0")  # the best of each
    assert same >= 38
    evaluated = cli(capfd, monkeypatch, "evaluate", exported, "--src", data / "dev.src",
                    "--ref", data / "dev.tgt", "--beam-size", "1")
    assert evaluated.code == 0 and "BLEU = " in evaluated.out, evaluated.err


@pytest.mark.parametrize("option, fragment", [
    (("--sample",), "sampling needs a checkpoint"), (("--prefix", "the"), "a prefix needs"),
    (("--format", "jsonl", "--token-scores"), "token scores need"),
    (("--format", "jsonl", "--alignment"), "alignment needs")])
def test_translate_dir_refuses_what_ctranslate2_cannot_do(exported, capfd, monkeypatch,
                                                          option, fragment):
    result = cli(capfd, monkeypatch, "translate", exported, "the dog .", *option)
    assert_one_line_error(result, fragment)


def test_export_refuses_rnn_and_other_attention(trained, tmp_path, capfd, monkeypatch):
    for model, fragment in ((dict(arch="rnn", attention="dot"), "model.arch rnn cannot"),
                            (dict(attention="cosine"), "model.attention cosine cannot")):
        path = _variant(trained, tmp_path, **model)
        result = cli(capfd, monkeypatch, "export", path, "-o", tmp_path / "out")
        assert_one_line_error(result, fragment)
        assert not (tmp_path / "out").exists()


def test_export_never_overwrites_what_it_did_not_write(trained, tmp_path, capfd, monkeypatch):
    ckpt = trained[0]
    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    a_file = tmp_path / "file"
    a_file.write_text("keep me too")
    for target, fragment in ((theirs, "was not written by `seq2seq export`"),
                             (a_file, "is not a folder"), (ckpt.parent, "was not written")):
        result = cli(capfd, monkeypatch, "export", ckpt, "-o", target)
        assert_one_line_error(result, fragment)
    assert (theirs / "notes.txt").read_text() == "keep me"
    assert a_file.read_text() == "keep me too"
    out = tmp_path / "out"
    for quantization in ("float32", "int8"):  # the second replaces the first
        done = cli(capfd, monkeypatch, "export", ckpt, "-o", out, "--quantization", quantization)
        assert done.code == 0 and "exported" in done.err, done.err
    assert CT2Translator.from_dir(out).manifest["quantization"] == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "out"]  # no leftovers


def test_benchmark_runs_every_engine(trained, tmp_path):
    from bench import ctranslate2 as bench_ct2

    engines = bench_ct2.open_engines(trained[0], tmp_path, threads=1)
    lines, refs = (read_lines(trained[1] / f"dev.{side}")[:6] for side in ("src", "tgt"))
    rows = bench_ct2.race("tiny", engines, lines, refs, 1, log=lambda message: None)
    assert [(r["search"], r["engine"]) for r in rows] == [
        (search, engine) for search in ("greedy", "beam 5") for engine in bench_ct2.ENGINES]
    assert all(r["sentences_per_s"] > 0 and r["same_as_pytorch"] >= 0.5 for r in rows)
    result = {"cpu": "cpu", "threads": 1, "torch": "t", "ctranslate2": "c", "rounds": 1,
              "rows": rows}
    result["notes"] = bench_ct2.notes(result)
    assert "ctranslate2 int8" in bench_ct2.format_report(result)


def test_checkpoint_only_commands_name_where_an_export_came_from(trained, exported, tmp_path,
                                                                 capfd, monkeypatch):
    dev = trained[1] / "dev.src"
    for args in (("score", exported, "--src", dev, "--tgt", dev),
                 ("attention", exported, "we sang .", "-o", tmp_path / "a.html"),
                 ("export", exported, "-o", tmp_path / "again")):
        result = cli(capfd, monkeypatch, *args)
        assert_one_line_error(result, "is a CTranslate2 export", str(trained[0]))


def test_serve_answers_from_an_exported_folder(exported):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from seq2seq.serving.app import Limits, create_app
    from seq2seq.serving.engine import Served

    served = Served.load(exported, device="cpu")
    lines = ["the dog sees a cat .", "a big man sleeps ."]
    with TestClient(create_app(served, Limits(batch_wait_ms=2))) as client:
        info = client.get("/info").json()
        assert info["engine"] == "ctranslate2" and info["parameters"] > 0
        answer = client.post("/translate", json={"text": lines, "beam_size": 3, "nbest": 2})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["translations"] == served.translator.translate(lines, beam_size=3)
        assert [len(group) for group in body["nbest"]] == [2, 2]
        refused = client.post("/translate", json={"text": lines, "attention": True})
        assert refused.status_code == 422 and "PyTorch model" in refused.json()["error"]


def test_int8_computes_in_float32_on_a_cpu_without_vnni(monkeypatch):
    from seq2seq.engines import ct2 as engine

    monkeypatch.setattr(engine, "int8_exact_on_cpu", lambda: False)
    assert engine.compute_type("cpu", "int8") == "float32"
    assert engine.compute_type("cpu", "float32") == "default"
    assert engine.compute_type("cuda", "int8") == "default"
    monkeypatch.setattr(engine, "int8_exact_on_cpu", lambda: True)
    assert engine.compute_type("cpu", "int8") == "default"
