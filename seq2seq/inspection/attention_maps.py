"""Attention heatmaps of one sentence: a PNG grid (matplotlib) or the attention explorer's
page (explorer.html) with the sentence's data inside, which `seq2seq serve` also serves live.

Input is plain data: per-layer weight tensors with the batch dimension removed, and the
token strings for their axes. Rows (queries) of the decoder maps are labelled with the
token each position predicts; columns (keys) with the tokens attended to.
"""

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.errors import Seq2SeqError


@dataclass
class AttentionMaps:
    """One sentence pair's attention weights and axis labels."""

    source: list[str]  # S source pieces, EOS included
    target_in: list[str]  # T decoder inputs: BOS + output pieces
    target_out: list[str]  # T predicted tokens: output pieces + EOS
    encoder: list[Tensor]  # per encoder layer, (H, S, S)
    decoder_self: list[Tensor]  # per decoder layer, (H, T, T)
    cross: list[Tensor]  # per decoder layer, (H, T, S)
    sentence: str = ""  # the source text
    translation: str = ""  # the output text

    @property
    def title(self) -> str:
        return f"{self.sentence} \u2192 {self.translation}" if self.sentence else "attention"


@dataclass
class Kind:
    """One family of maps: which weights, and what labels its rows and columns."""

    key: str
    name: str
    layers: list[Tensor]  # each (H, Tq, Tk)
    rows: list[str]  # Tq query labels
    cols: list[str]  # Tk key labels
    rows_name: str
    cols_name: str


def kinds(maps: AttentionMaps) -> list[Kind]:
    """Cross-attention first (the alignment people look for), then the self-attentions."""
    return [
        Kind("cross", "cross-attention", maps.cross, maps.target_out, maps.source,
             "predicted target token", "source token"),
        Kind("encoder", "encoder self-attention", maps.encoder, maps.source, maps.source,
             "source token", "source token"),
        Kind("decoder_self", "decoder self-attention", maps.decoder_self, maps.target_out,
             maps.target_in, "predicted target token", "decoder input token"),
    ]


def _panels(weights: Tensor) -> Iterator[tuple[str, Tensor]]:
    """weights (H, Tq, Tk) -> ("mean of heads", (Tq, Tk)), then ("head h", (Tq, Tk)) per head."""
    yield "mean of heads", weights.float().mean(dim=0)
    for h in range(weights.size(0)):
        yield f"head {h}", weights[h].float()


def draw_png(maps: AttentionMaps, path: Path) -> None:
    """One grid image: for each decoder layer a row of cross-attention, the mean of the
    heads then each head; then a row of encoder and a row of decoder self-attention, the
    mean of the heads per layer (every head of those is in the HTML page). The image
    format follows the suffix: .png, .pdf or .svg."""
    from seq2seq.inspection.plots import new_figure, save_figure

    cross, encoder, decoder_self = kinds(maps)
    grid = [[(cross, f"layer {i}, {head}", m) for head, m in _panels(w)]
            for i, w in enumerate(cross.layers)]
    for kind in (encoder, decoder_self):
        grid.append([(kind, f"layer {i}, mean of heads", w.float().mean(dim=0))
                     for i, w in enumerate(kind.layers)])
    grid = [row for row in grid if row]
    if not grid:
        raise Seq2SeqError("no attention weights to draw")
    n_cols = max(len(row) for row in grid)
    longest = max(len(maps.source), len(maps.target_in))
    panel = min(6.0, max(2.5, 0.18 * longest + 1.2))  # inches: room for the token labels
    figure = new_figure(panel * n_cols, panel * len(grid))
    axes = figure.subplots(len(grid), n_cols, squeeze=False)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            if c < len(row):
                kind, where, matrix = row[c]
                _heatmap(axes[r][c], matrix, kind, f"{kind.name}\n{where}")
            else:
                axes[r][c].set_axis_off()
    figure.suptitle(maps.title)
    save_figure(figure, path)


def _heatmap(ax, matrix: Tensor, kind: Kind, title: str) -> None:
    """matrix (Tq, Tk), rows labelled kind.rows, columns kind.cols."""
    ax.imshow(matrix.tolist(), cmap="viridis", vmin=0.0, aspect="auto",
              interpolation="nearest")
    font = 7 if max(len(kind.rows), len(kind.cols)) <= 30 else 5
    ax.set_xticks(range(len(kind.cols)), kind.cols, rotation=90, fontsize=font)
    ax.set_yticks(range(len(kind.rows)), kind.rows, fontsize=font)
    ax.set_title(title, fontsize=8)


def teacher_forced_maps(model, src_tok, tgt_tok, src_ids: list[int], out_ids: list[int],
                        sentence: str = "", translation: str = "") -> AttentionMaps:
    """Rerun the model teacher-forced on (source + EOS, BOS + output) with need_weights=True.

    model: a Transformer (or the RNN baseline) in eval mode; src_ids: the source pieces'
    ids, no EOS; out_ids: the output's ids, no BOS or EOS. Weights come back per layer
    as (H, Tq, Tk), on the CPU.
    """
    from seq2seq.data import make_source
    from seq2seq.model.masks import target_mask

    device = next(model.parameters()).device
    src, src_mask = make_source([src_ids], model.pad_id, src_tok.eos_id)  # (1, S), (1, 1, 1, S)
    tgt = torch.tensor([[tgt_tok.bos_id, *out_ids]])  # (1, T)
    src, src_mask, tgt = src.to(device), src_mask.to(device), tgt.to(device)
    with torch.no_grad():
        memory, encoder = model.encode(src, src_mask, need_weights=True)  # (1, S, D)
        _, weights = model.decode(tgt, memory, src_mask, target_mask(tgt, model.pad_id),
                                  need_weights=True)
    return AttentionMaps(
        source=src_tok.pieces(src[0].tolist()), target_in=tgt_tok.pieces(tgt[0].tolist()),
        target_out=tgt_tok.pieces([*out_ids, tgt_tok.eos_id]),
        encoder=[w[0].cpu() for w in encoder],  # (H, S, S) each
        decoder_self=[w[0].cpu() for w in weights.decoder_self],  # (H, T, T) each
        cross=[w[0].cpu() for w in weights.cross],  # (H, T, S) each
        sentence=sentence, translation=translation)


def maps_json(maps: AttentionMaps, digits: int = 4) -> dict:
    """The maps as the API and the page carry them: the axes' pieces, and per kind a list
    of layers, each a list of heads, each a (Tq, Tk) list of rows, rounded."""
    def layers(weights: list[Tensor]) -> list:
        return [[[[round(v, digits) for v in row] for row in head] for head in w.float().tolist()]
                for w in weights]

    return {"source": maps.source, "target_in": maps.target_in, "target_out": maps.target_out,
            "cross": layers(maps.cross), "encoder": layers(maps.encoder),
            "decoder_self": layers(maps.decoder_self)}


def html_data(maps: AttentionMaps, decoding: str = "", info: dict | None = None) -> dict:
    """The static page's data: one sentence shaped as a /translate answer, beside what the
    live page would ask /info for."""
    return {"mode": "static", "info": info, "decoding": decoding,
            "request": {"text": [maps.sentence]},
            "response": {"translations": [maps.translation], "attention": [maps_json(maps)]}}


def page_html(data: dict | None, title: str = "Attention explorer") -> str:
    """The explorer page: data None for the live page (it asks the server), else the data
    (html_data) embedded for a page that needs no server."""
    text = json.dumps(data, ensure_ascii=False)
    # Inside <script>, "</script>" or "<!--" in a token would end or confuse the block.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    values = {"TITLE": html.escape(title), "DATA": text}
    template = resources.files("seq2seq.inspection").joinpath("explorer.html").read_text("utf-8")
    return re.sub(r"__(TITLE|DATA)__", lambda m: values[m.group(1)], template)  # one pass


def write_html(maps: AttentionMaps, path: Path, decoding: str = "", info: dict | None = None
               ) -> None:
    """The explorer page for this one sentence, self-contained (inline data, script and
    style; nothing fetched), written to path."""
    page = page_html(html_data(maps, decoding, info), title=maps.title)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror or error}") from None
