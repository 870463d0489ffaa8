"""Pictures of an Explanation (rnnlab.explain): a PNG heatmap of every layer's gates over
the tokens, and a self-contained HTML page (token strips coloured by each gate's mean, the
text summary, and the heatmap embedded)."""
from __future__ import annotations

import base64
import html
import textwrap
from pathlib import Path

import torch
from torch import Tensor

from .explain import Explanation, show, summary, visible


def _units(values: Tensor, limit: int) -> tuple[Tensor, str]:
    """values (T, H) -> at most ``limit`` units (those that vary most over the tokens),
    sorted by their mean; and a note saying which were shown."""
    H = values.shape[1]
    if H <= limit:
        keep = torch.arange(H)
        note = f"all {H} units"
    else:
        keep = values.std(0).argsort(descending=True)[:limit]
        note = f"{limit} of {H} units (most variable)"
    keep = keep[values[:, keep].mean(0).argsort()]
    return values[:, keep].T, note                                    # (units, T)


def heatmap(expl: Explanation, path: str | Path, max_units: int = 48,
            title: str = "") -> None:
    """One panel per layer and gate: units (rows) by tokens (columns), 0 to 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(layer, g, v) for layer in expl.layers for g, v in visible(layer).items()]
    T = len(expl.tokens)
    width = min(40.0, max(8.0, 0.3 * T + 3))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 1.7 * len(panels) + 0.8),
                             squeeze=False, layout="constrained")
    labels = [show(t) for t in expl.tokens]
    image = None
    for ax, (layer, gate, values) in zip(axes[:, 0], panels):
        shown, note = _units(values.float(), max_units)
        lo, hi = (0.0, 1.0) if float(values.min()) >= 0 and float(values.max()) <= 1 else \
            (float(values.min()), float(values.max()))
        image = ax.imshow(shown.numpy(), aspect="auto", cmap="viridis", vmin=lo, vmax=hi,
                          interpolation="nearest")
        ax.set_ylabel(f"{layer.name}\n{gate}", fontsize=9)
        ax.set_yticks([])
        ax.set_title(f"{layer.name} ({layer.cell}) — {gate} gate, {note}", fontsize=9,
                     loc="left")
        step = max(1, T // 120)
        ax.set_xticks(range(0, T, step))
        ax.set_xticklabels(labels[::step], fontsize=8, rotation=90 if T > 30 else 0)
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, aspect=40,
                     label="gate value (0 closed, 1 open)")
    title = title or "gate values token by token (columns) for each unit (rows)"
    fig.suptitle(textwrap.fill(title, int(width * 9)), fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _colour(v: float) -> str:
    """White (0) to dark blue (1)."""
    v = min(1.0, max(0.0, v))
    r, g, b = (int(255 + (c - 255) * v) for c in (8, 48, 107))
    return f"rgb({r},{g},{b})"


_CSS = """body{font-family:sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td{padding:3px 4px;font-family:monospace;font-size:14px;text-align:center;border:1px solid #eee}
th{text-align:right;padding-right:.6em;font-weight:normal;color:#444;white-space:nowrap}
pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}img{max-width:100%}"""


def html_page(expl: Explanation, png: str | Path | None = None, title: str = "") -> str:
    """A self-contained HTML page (no external files) explaining the gates."""
    title = title or "What the gates keep and discard"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
           "<p>Each strip is one gate of one layer; each cell is one token, shaded by the gate's "
           "mean over the layer's units, from white (the strip's lowest mean, printed under "
           "the gate's name) to dark blue (its highest). Hover for the values.</p>"]
    for layer in expl.layers:
        H = next(iter(layer.gates.values())).shape[-1]
        out.append(f"<h2>{html.escape(layer.name)} ({html.escape(layer.cell)}, {H} units)</h2>"
                   "<table>")
        for gate, values in visible(layer).items():
            means = values.mean(-1).tolist()
            lo, hi = min(means), max(means)
            shade = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in means]
            cells = "".join(
                f"<td style='background:{_colour(w)};color:{'#fff' if w > 0.55 else '#000'}' "
                f"title='{html.escape(repr(t))}: {v:.3f}'>{html.escape(show(t))}</td>"
                for t, v, w in zip(expl.tokens, means, shade))
            out.append(f"<tr><th>{html.escape(gate)}<br><small>{lo:.2f}–{hi:.2f}</small></th>"
                       f"{cells}</tr>")
        out.append("</table>")
    if expl.predictions:
        cells = "".join(f"<td>{html.escape(show(p))}</td>" for p in expl.predictions)
        out.append(f"<h2>Most likely next token after each</h2><table><tr><th>prediction</th>"
                   f"{cells}</tr></table>")
    out.append(f"<h2>Summary</h2><pre>{html.escape(summary(expl))}</pre>")
    if png is not None and Path(png).is_file():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        out.append(f"<h2>Every unit</h2><img alt='gate heatmap' src='data:image/png;base64,"
                   f"{data}'>")
    out.append("</body></html>")
    return "\n".join(out)
