"""Attention heatmaps of one sentence: a PNG grid (matplotlib) or a self-contained HTML page.

Input is plain data: per-layer weight tensors with the batch dimension removed, and the
token strings for their axes. Rows (queries) of the decoder maps are labelled with the
token each position predicts; columns (keys) with the tokens attended to.
"""

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def html_data(maps: AttentionMaps, digits: int = 4) -> dict:
    """The page's data: per kind, labels and per layer the mean and each head as lists."""
    def rounded(matrix: Tensor) -> list[list[float]]:
        return [[round(v, digits) for v in row] for row in matrix.tolist()]

    return {"title": maps.title, "kinds": [
        {"key": kind.key, "name": kind.name, "rows": kind.rows, "cols": kind.cols,
         "rows_name": kind.rows_name, "cols_name": kind.cols_name,
         "layers": [[rounded(m) for _, m in _panels(w)] for w in kind.layers]}
        for kind in kinds(maps)]}


def write_html(maps: AttentionMaps, path: Path) -> None:
    """A self-contained page (inline data, script and style; nothing fetched) with
    menus for kind, layer and head, drawing the chosen map as a coloured table."""
    data = json.dumps(html_data(maps), ensure_ascii=False)
    # Inside <script>, "</script>" or "<!--" in a token would end or confuse the block.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    values = {"TITLE": html.escape(maps.title), "DATA": data}
    page = re.sub(r"__(TITLE|DATA)__", lambda m: values[m.group(1)], PAGE)  # one pass
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror or error}") from None


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
label { margin-right: 1em; }
#map { margin-top: 1em; overflow: auto; }
table { border-collapse: collapse; font-size: 12px; }
td { width: 2.6em; height: 2.2em; text-align: center; border: 1px solid #eee; }
td.row { width: auto; text-align: right; padding-right: 0.5em; border: none;
         white-space: nowrap; }
td.col { height: auto; vertical-align: bottom; border: none; writing-mode: vertical-rl;
         transform: rotate(180deg); padding: 0.3em 0; white-space: nowrap; }
td.corner { border: none; font-size: 11px; color: #666; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<p>
<label>attention <select id="kind"></select></label>
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label>
</p>
<p id="axes"></p>
<div id="map"></div>
<script id="attention-data" type="application/json">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("attention-data").textContent);
const kindMenu = document.getElementById("kind");
const layerMenu = document.getElementById("layer");
const headMenu = document.getElementById("head");

function fill(menu, labels) {
  menu.replaceChildren(...labels.map((text, i) => new Option(text, String(i))));
}

function chooseKind() {
  const kind = data.kinds[kindMenu.value];
  fill(layerMenu, kind.layers.map((_, i) => "layer " + i));
  const heads = kind.layers.length ? kind.layers[0].length - 1 : 0;
  fill(headMenu, ["mean of heads", ...Array.from({length: heads}, (_, h) => "head " + h)]);
  draw();
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function draw() {
  const kind = data.kinds[kindMenu.value];
  const matrix = kind.layers[layerMenu.value][headMenu.value];
  document.getElementById("axes").textContent =
    "rows: " + kind.rows_name + "; columns: " + kind.cols_name +
    "; colour scaled to the largest weight shown";
  const largest = Math.max(1e-9, ...matrix.flat());
  const table = document.createElement("table");
  const header = table.insertRow();
  cell(header, "", "corner");
  kind.cols.forEach(token => cell(header, token, "col"));
  matrix.forEach((weights, i) => {
    const row = table.insertRow();
    cell(row, kind.rows[i], "row");
    weights.forEach((w, j) => {
      const share = w / largest;
      const td = cell(row, w >= 0.005 ? w.toFixed(2).replace(/^0/, "") : "");
      td.style.background = "rgba(33, 102, 172, " + share.toFixed(3) + ")";
      td.style.color = share > 0.5 ? "white" : "black";
      td.title = kind.rows[i] + " \\u2192 " + kind.cols[j] + ": " + w.toFixed(4);
    });
  });
  document.getElementById("map").replaceChildren(table);
}

fill(kindMenu, data.kinds.map(kind => kind.name));
kindMenu.addEventListener("change", chooseKind);
layerMenu.addEventListener("change", draw);
headMenu.addEventListener("change", draw);
chooseKind();
</script>
</body>
</html>
"""
