"""Parameter and FLOPs accounting, attention maps (PNG and HTML), `info`."""

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import typer
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from seq2seq.checkpoint import save_checkpoint
from seq2seq.config import ModelConfig, from_dict
from seq2seq.data import make_batch
from seq2seq.errors import Seq2SeqError
from seq2seq.inspection.accounting import (
    flops_per_target_token,
    format_table,
    parameter_table,
    training_flops,
)
from seq2seq.inspection.attention_maps import AttentionMaps, draw_png, html_data, write_html
from seq2seq.inspection.commands import attention, info, plot, sentence_attention
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.model.transformer import build_model, count_parameters
from seq2seq.tokenizer import train_tokenizer
from seq2seq.translate import Translator
from tests.conftest import BOS, EOS, PAD, ROOT, tiny_config_yaml, tiny_model, write_slice

SCORES = ("scaled_dot", "dot", "cosine", "general", "additive")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"d_model": 32, "n_heads": 4, "d_ff": 64, "encoder_layers": 2, "decoder_layers": 2,
        "dropout": 0.0, "max_positions": 64}


# ---- parameter accounting ----------------------------------------------------------------

# (tie_embeddings, share_embeddings, joint vocabulary): shared only takes effect when joint
EMBEDDINGS = [(True, True, True), (False, True, True), (True, False, False), (False, False, False),
              (False, True, False)]


@pytest.mark.parametrize("tie, share, joint", EMBEDDINGS)
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("score", SCORES)
def test_parameter_table_total_is_the_real_count(score, norm, tie, share, joint):
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=24, encoder_layers=1, decoder_layers=2,
                      attention=score, norm=norm, tie_embeddings=tie, share_embeddings=share)
    model = build_model(cfg, 30, 30 if joint else 37, PAD, joint_vocab=joint)
    rows = parameter_table(model)
    assert rows[-1] == ("total", count_parameters(model))
    assert rows[-1][1] == sum(p.numel() for p in model.parameters())
    assert sum(n for _, n in rows[:-1]) == rows[-1][1]
    labels = [label for label, _ in rows]
    assert not any(label.startswith("other") for label in labels)
    assert any("shared" in label for label in labels) == (share and joint)
    output = [row for row in rows if row[0].startswith("output layer")]
    tgt_vocab = 30 if joint else 37
    expected = ("output layer (tied to target embedding)", 0) if tie else (
        "output layer", tgt_vocab * 16)
    assert output == [expected]
    assert any("final norm" in label for label in labels) == (norm == "pre")


@pytest.mark.parametrize("score, extra", [("scaled_dot", 0), ("cosine", 4), ("general", 4 * 8 * 8),
                                          ("additive", 2 * 4 * 8 * 8 + 4 * 8)])
def test_parameter_table_rows(score, extra):
    rows = dict(parameter_table(tiny_model(attention=score)))  # D 32, H 4, K 8, F 64, V 40
    assert rows["embedding, source = target (shared)"] == 40 * 32
    for name in ("Q", "K", "V", "output"):
        assert rows[f"decoder.1 cross-attn {name}"] == 32 * 32 + 32
    assert rows["encoder.0 feed-forward"] == 32 * 64 + 64 + 64 * 32 + 32
    assert rows["decoder.0 norms"] == 3 * 2 * 32
    scores = [n for label, n in rows.items() if label.startswith("encoder.0 self-attn score")]
    assert scores == ([extra] if extra else [])


def test_format_table_aligns_columns():
    text = format_table([("a", 1), ("longer name", 1234567), ("total", 1234568)],
                        header=("component", "parameters"))
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("---") and lines[-2].startswith("---")
    assert lines[-1].endswith("1,234,568")


# ---- FLOPs -------------------------------------------------------------------------------

def test_flops_by_hand():
    model = tiny_model()  # D 32, F 64, V 40, 2 + 2 layers, scaled_dot
    D, F, V, S, T = 32, 64, 40, 5, 7
    encoder_layer = (4 * 2 * S * D * D  # Q, K, V, output projections
                     + 2 * 2 * S * S * D  # Q K^T and P V
                     + 2 * 2 * S * D * F)  # feed-forward
    decoder_layer = (4 * 2 * T * D * D + 2 * 2 * T * T * D  # self-attention, full T x T
                     + 2 * 2 * T * D * D + 2 * 2 * S * D * D  # cross: Q, output on T; K, V on S
                     + 2 * 2 * T * S * D  # cross Q K^T and P V
                     + 2 * 2 * T * D * F)
    output = 2 * T * D * V
    assert 2 * encoder_layer + 2 * decoder_layer + output == 537_344
    flops = flops_per_target_token(model, S, T)
    assert flops["forward"] == pytest.approx(537_344 / T)
    assert flops["training"] == pytest.approx(3 * 537_344 / T)
    assert flops["encoder"] == pytest.approx(2 * encoder_layer / T)
    assert flops["output"] == pytest.approx(2 * D * V)


@pytest.mark.parametrize("score", ["dot", "cosine", "general", "additive"])
def test_flops_match_torch_flop_counter(score):
    """The formula against torch's own count of the matrix products (unfused attention)."""
    model = tiny_model(attention=score).train()
    S, T = 6, 9
    src, tgt = torch.randint(4, 40, (1, S)), torch.randint(4, 40, (1, T))
    with FlopCounterMode(display=False) as forward:
        logits = model(src, tgt, padding_mask(src, PAD), target_mask(tgt, PAD))
    with FlopCounterMode(display=False) as backward:
        logits.sum().backward()
    flops = flops_per_target_token(model, S, T)
    assert forward.get_total_flops() == pytest.approx(flops["forward"] * T)
    total = forward.get_total_flops() + backward.get_total_flops()
    assert total == pytest.approx(flops["training"] * T)
    assert training_flops(model, [S], [T]) == total


def test_training_flops_sums_pairs_and_reference_ballpark():
    model = tiny_model()
    pairs = [(5, 7), (9, 3), (1, 1)]
    expected = sum(flops_per_target_token(model, s, t)["training"] * t for s, t in pairs)
    assert training_flops(model, *zip(*pairs, strict=True)) == pytest.approx(expected)
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        reference = build_model(ModelConfig(), 8000, 8000, PAD, joint_vocab=True)
    per_token = flops_per_target_token(reference, 13, 14)["training"]
    assert 40e6 < per_token < 50e6  # the issue's ~45 MFLOP on Multi30k-length pairs


# ---- attention maps ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model trained for a few steps on toy lines, saved with its tokenizer."""
    src = (ROOT / "data/toy/train.src").read_text().splitlines()[:200]
    tgt = (ROOT / "data/toy/train.tgt").read_text().splitlines()[:200]
    tok = train_tokenizer(src + tgt, vocab_size=80, threads=1)
    config = from_dict({"data": {"train": "t", "dev": "d"}, "model": TINY,
                        "train": {"max_steps": 30}, "decode": {"beam_size": 2}})
    torch.manual_seed(0)
    model = build_model(config.model, tok.vocab_size, tok.vocab_size, PAD, joint_vocab=True)
    batch = make_batch(tok.encode(src[:16]), tok.encode(tgt[:16]), PAD, BOS, EOS)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        logits = model(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(),
                                                 ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("inspect") / "tiny.pt"
    save_checkpoint({"config": config.to_dict(), "model": model.state_dict(),
                     "tokenizers": {"src": tok.model_bytes, "tgt": tok.model_bytes},
                     "step": 30, "epoch": 0, "metrics": {}}, path)
    return path


def fake_maps(source: list[str], target: list[str], heads: int = 2, layers: int = 2
              ) -> AttentionMaps:
    """Random row-stochastic weights for given tokens (no model needed)."""
    S, T = len(source) + 1, len(target) + 1
    g = torch.Generator().manual_seed(0)

    def weights(q: int, k: int) -> list[torch.Tensor]:
        return [torch.rand(heads, q, k, generator=g).softmax(-1) for _ in range(layers)]

    return AttentionMaps(source=[*source, "</s>"], target_in=["<s>", *target],
                         target_out=[*target, "</s>"], encoder=weights(S, S),
                         decoder_self=weights(T, T), cross=weights(T, S),
                         sentence=" ".join(source), translation=" ".join(target))


def test_sentence_attention_shapes_and_labels(checkpoint):
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    maps = sentence_attention(translator, "the sad cat sleeps .", beam_size=1)
    S, T = len(maps.source), len(maps.target_in)
    assert maps.source[-1] == "</s>" and maps.target_in[0] == "<s>"
    assert maps.target_out[-1] == "</s>" and maps.target_in[1:] == maps.target_out[:-1]
    assert len(maps.encoder) == len(maps.cross) == len(maps.decoder_self) == 2
    assert maps.encoder[0].shape == (4, S, S)
    assert maps.decoder_self[1].shape == (4, T, T)
    assert maps.cross[0].shape == (4, T, S)
    assert torch.allclose(maps.cross[1].sum(-1), torch.ones(4, T))
    assert maps.decoder_self[0].triu(diagonal=1).abs().max() == 0  # causal
    assert maps.translation == translator.translate(["the sad cat sleeps ."], beam_size=1)[0]
    with pytest.raises(Seq2SeqError, match="empty"):
        sentence_attention(translator, "   ", beam_size=1)


def test_attention_command_writes_png(checkpoint, tmp_path, capsys):
    out = tmp_path / "maps" / "attention.png"
    attention(checkpoint, "the cat .", out, beam_size=2)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert capsys.readouterr().out.strip()  # the translation


def test_an_image_name_without_a_known_suffix_is_refused_before_any_work(checkpoint, tmp_path):
    for name in ("attention", "attention.xyz"):
        with pytest.raises(Seq2SeqError, match=r"the format follows the suffix; use .png"):
            attention(checkpoint, "the cat .", tmp_path / name)
        with pytest.raises(Seq2SeqError, match=r"use .png, .pdf, .svg$"):
            plot([tmp_path], tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class StrictParser(HTMLParser):
    """Records tags and fails on ones closed out of order; keeps <script> contents by id."""

    VOID = {"meta", "br", "input", "link", "img", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.scripts, self._script_id = [], [], {}, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "script":
            self._script_id = dict(attrs).get("id", "")

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts[self._script_id] = self.scripts.get(self._script_id, "") + data


def parse_html(text: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == []
    return parser


def test_attention_command_writes_self_contained_html(checkpoint, tmp_path):
    out = tmp_path / "attention.html"
    attention(checkpoint, "the sad cat sleeps .", out, beam_size=1)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for banned in ("http://", "https://", "<script src", "<link", "@import"):
        assert banned not in text
    parser = parse_html(text)
    assert {tag for tag, _ in parser.tags} >= {"html", "head", "body", "select", "script"}
    assert all("src" not in attrs for _, attrs in parser.tags)
    data = json.loads(parser.scripts["attention-data"])
    assert data["mode"] == "static" and data["request"]["text"] == ["the sad cat sleeps ."]
    assert data["decoding"] == "greedy search" and data["info"]["model"]["d_model"] == 32
    answer = data["response"]  # shaped as POST /translate answers, so one page shows both
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert answer["translations"] == [translator.translate("the sad cat sleeps .", beam_size=1)]
    maps = answer["attention"][0]
    S, T = len(maps["source"]), len(maps["target_out"])
    assert len(maps["cross"]) == 2 and len(maps["cross"][0]) == 4  # 2 layers of 4 heads
    assert len(maps["cross"][0][0]) == T and len(maps["cross"][0][0][0]) == S
    assert len(maps["encoder"][1][3]) == S and len(maps["decoder_self"][0][0][0]) == T
    assert "addEventListener" in parser.scripts[""]


def test_html_escapes_tokens_that_look_like_markup(tmp_path):
    maps = fake_maps(["</script>", "<!--", "a&b"], ["x", "</script><script>"])
    out = tmp_path / "tricky.html"
    write_html(maps, out)
    text = out.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the data block's and the code block's own
    parser = parse_html(text)
    data = json.loads(parser.scripts["attention-data"])
    assert data == json.loads(json.dumps(html_data(maps)))  # the tokens survive unchanged


def test_png_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now fails
    maps = fake_maps(["a", "b"], ["c"])
    with pytest.raises(Seq2SeqError, match=r"pip install 'seq2seq\[plot\]'"):
        draw_png(maps, tmp_path / "a.png")
    write_html(maps, tmp_path / "a.html")  # HTML needs no matplotlib
    assert (tmp_path / "a.html").stat().st_size > 0


# ---- info and the commands on a Typer app ------------------------------------------------

def total_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("total "))


def test_info_on_a_config_with_and_without_tokenizer(tmp_path, capsys):
    config = tiny_config_yaml(tmp_path, write_slice(tmp_path, n_train=50, n_dev=5))
    cfg = from_dict({"model": TINY, "data": {"train": "t", "dev": "d"},
                     "train": {"max_steps": 1}}).model
    info(config, src_len=10, tgt_len=12)
    out = capsys.readouterr().out
    expected = count_parameters(build_model(cfg, 120, 120, PAD, joint_vocab=True))
    assert total_line(out).endswith(f"{expected:,}")
    assert "tokenizer.vocab_size = 120" in out and "training (3 x forward)" in out

    tok = train_tokenizer(["the cat sleeps .", "siv tremo to spavat ."] * 20, vocab_size=30,
                          threads=1)
    tok.save(tmp_path / "run/spm.model")
    info(config, src_len=10, tgt_len=12)
    out = capsys.readouterr().out
    expected = count_parameters(build_model(cfg, tok.vocab_size, tok.vocab_size, PAD, True))
    assert total_line(out).endswith(f"{expected:,}")
    assert f"{tok.vocab_size} source / {tok.vocab_size} target pieces, from" in out


def test_info_counts_the_rnn_baselines_flops_too(tmp_path, capsys):
    config = tiny_config_yaml(tmp_path, write_slice(tmp_path, n_train=50, n_dev=5))
    rnn = "model:\n  arch: rnn\n  attention: additive\n"
    config.write_text(config.read_text().replace("model:\n", rnn))
    info(config, src_len=10, tgt_len=12)
    out = capsys.readouterr().out
    assert "RNN gates" in out and "training (3 x forward)" in out


def test_info_on_a_checkpoint(checkpoint, capsys):
    info(checkpoint, src_len=13, tgt_len=14)
    out = capsys.readouterr().out
    model = Translator.from_checkpoint(checkpoint, device="cpu").model
    assert total_line(out).endswith(f"{count_parameters(model):,}")
    flops = flops_per_target_token(model, 13, 14)
    assert 1e3 <= flops["training"] < 1e6  # so the table is in kFLOP
    assert f"{flops['forward'] / 1e3:.2f} kFLOP" in out


def test_commands_on_a_typer_app(checkpoint, tmp_path):
    app = typer.Typer()
    for command in (info, attention, plot):
        app.command()(command)
    runner = CliRunner()
    for name in ("info", "attention", "plot"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, result.output
    result = runner.invoke(app, ["info", str(checkpoint), "--src-len", "5", "--tgt-len", "6"])
    assert result.exit_code == 0 and "total" in result.output, result.output
    result = runner.invoke(app, ["plot", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.png")])
    assert isinstance(result.exception, Seq2SeqError)  # cli.main prints it on one line
    result = runner.invoke(app, ["attention", str(checkpoint), "the cat ."])
    assert result.exit_code == 2 and "--output" in result.output  # -o is required


def test_importing_the_commands_loads_no_plotting_library():
    code = ("import sys, seq2seq.inspection.commands, seq2seq.inspection.accounting, "
            "seq2seq.inspection.plots, seq2seq.inspection.attention_maps; "
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
