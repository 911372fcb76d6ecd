"""Plotly figures and thumbnails for the dashboard pages: display code only, no model code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

DIVERGING = "RdBu_r"  # negative blue, zero white, positive red
SEQUENTIAL = "Greys"
INK = [[0.0, "black"], [1.0, "white"]]  # digits as the canvas draws them: white ink on black
ERRORS = [[0.0, "#fff5f0"], [1.0, "#f0694a"]]  # white to mid red: dark count text stays readable
LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


def thumbnail(image: np.ndarray, size: int = 112, pad: int = 4) -> np.ndarray:
    """A uint8 copy of a [0, 1] image scaled to ``size`` on its longer side: crisp pixels up, smooth down.

    A ``pad``-pixel black frame keeps ink that touches the edge (a cropped digit) visible on a white page.
    """
    h, w = image.shape
    scale = (size - 2 * pad) / max(h, w)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    return np.pad(np.asarray(pixels.resize(target, resample)), pad)


def _symmetric(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    peak = float(np.abs(finite).max()) if finite.size else 1.0
    return peak or 1.0


def _image_axes(fig: go.Figure, height: int) -> go.Figure:
    fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(height=height, plot_bgcolor="rgba(0,0,0,0)", **LAYOUT)
    return fig


def tile(maps: np.ndarray, columns: int, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Lay ``maps`` (n, h, w) out in a grid with NaN gaps; also return each pixel's map index (-1 in gaps)."""
    n, h, w = maps.shape
    rows = -(-n // columns)
    mosaic = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, dtype=np.float64)
    index = np.full(mosaic.shape, -1, dtype=np.int64)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = r * (h + gap), c * (w + gap)
        mosaic[top:top + h, left:left + w] = maps[k]
        index[top:top + h, left:left + w] = k
    return mosaic, index


def feature_maps(maps: np.ndarray, title: str, columns: int, label: str = "map", height: int | None = None) -> go.Figure:
    """Feature maps (n, h, w) as one heatmap grid; diverging around zero when there are negatives, hover = value."""
    n, h, w = maps.shape
    mosaic, index = tile(maps, columns)
    signed = bool(np.nanmin(mosaic) < 0)
    peak = _symmetric(mosaic)
    r, c = np.indices(mosaic.shape)
    custom = np.stack([index, r % (h + 1), c % (w + 1)], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=mosaic, customdata=custom, colorscale=DIVERGING if signed else SEQUENTIAL,
        zmid=0 if signed else None, zmin=-peak if signed else 0, zmax=peak,
        hovertemplate=(f"{label} %{{customdata[0]}}<br>row %{{customdata[1]}}, col %{{customdata[2]}}"
                       "<br>value %{z:.4f}<extra></extra>"),
        hoverongaps=False, colorbar={"thickness": 12},
    ))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title)
    auto = int(900 * mosaic.shape[0] / mosaic.shape[1]) + 60
    return _image_axes(fig, height or max(160, min(auto, 520)))


def kernel_grid(kernels: np.ndarray, title: str, row_label: str, col_label: str, height: int | None = None) -> go.Figure:
    """Kernels (rows, cols, k, k), NaN where absent, as one heatmap grid centred on zero; hover names the kernel."""
    rows, cols, k, _ = kernels.shape
    flat = kernels.reshape(rows * cols, k, k)
    mosaic, index = tile(flat, cols)
    peak = _symmetric(mosaic)
    r, c = np.indices(mosaic.shape)
    custom = np.stack([index // cols, index % cols, r % (k + 1), c % (k + 1)], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=mosaic, customdata=custom, colorscale=DIVERGING, zmid=0, zmin=-peak, zmax=peak, hoverongaps=False,
        hovertemplate=(f"{col_label} %{{customdata[1]}} ← {row_label} %{{customdata[0]}}"
                       "<br>weight[%{customdata[2]}, %{customdata[3]}] = %{z:.4f}<extra></extra>"),
        colorbar={"thickness": 12, "title": {"text": "weight"}},
    ))
    centres = [i * (k + 1) + (k - 1) / 2 for i in range(max(rows, cols))]
    fig.update_xaxes(tickvals=centres[:cols], ticktext=[str(j) for j in range(cols)], title=col_label, side="top")
    fig.update_yaxes(tickvals=centres[:rows], ticktext=[str(i) for i in range(rows)], title=row_label)
    fig.update_layout(title=title)
    auto = int(900 * mosaic.shape[0] / mosaic.shape[1]) + 110
    fig = _image_axes(fig, height or max(200, min(auto, 560)))
    fig.update_layout(margin={"l": 10, "r": 10, "t": 90, "b": 10})
    return fig


def connection_table(mask: np.ndarray, title: str) -> go.Figure:
    """Table I as a heatmap: rows = S2 maps, columns = C3 maps, X where connected."""
    z = mask.astype(int)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(z.shape[1])), y=list(range(z.shape[0])), colorscale=[[0, "#f4f4f4"], [1, "#1f4e9c"]],
        zmin=0, zmax=1, showscale=False, xgap=2, ygap=2, text=np.where(mask, "X", ""), texttemplate="%{text}",
        hovertemplate="S2 map %{y} → C3 map %{x}: %{customdata}<extra></extra>",
        customdata=np.where(mask, "connected", "not connected"),
    ))
    fig.update_xaxes(title="C3 feature map", dtick=1, side="top", showgrid=False, constrain="domain")
    fig.update_yaxes(title="S2 feature map", dtick=1, autorange="reversed", scaleanchor="x", showgrid=False, constrain="domain")
    fig.update_layout(title=title, height=300, **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 90, "b": 10}})
    return fig


def bitmap(values: np.ndarray, title: str, zmax: float | None = None, height: int = 300, showscale: bool = True) -> go.Figure:
    """An 84-vector as its 7x12 image (12 rows of 7, row-major), centred on zero."""
    image = np.asarray(values, dtype=np.float64).reshape(12, 7)
    peak = zmax or _symmetric(image)
    fig = go.Figure(go.Heatmap(
        z=image, colorscale=DIVERGING, zmid=0, zmin=-peak, zmax=peak, xgap=1, ygap=1,
        hovertemplate="row %{y}, col %{x}<br>value %{z:.3f}<extra></extra>", colorbar={"thickness": 10},
        showscale=showscale,
    ))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title)
    return _image_axes(fig, height)


def bars(values: Sequence[float], title: str, x_title: str, y_title: str, highlight: int | None = None,
         labels: Sequence[str] | None = None, fmt: str = ".4f", height: int = 300) -> go.Figure:
    """A bar chart with hover values; ``highlight`` colours one bar."""
    values = np.asarray(values, dtype=np.float64)
    x = list(labels) if labels is not None else [str(i) for i in range(len(values))]
    colours = ["#d62728" if i == highlight else "#4c78a8" for i in range(len(values))]
    fig = go.Figure(go.Bar(x=x, y=values, marker_color=colours,
                           hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y:{fmt}}}<extra></extra>"))
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title=y_title)
    fig.update_layout(title=title, height=height, **LAYOUT)
    return fig


def error_curves(epochs: list[dict], train_label: str, test_label: str) -> go.Figure:
    """Per-epoch train and test error (percent) from a model card."""
    x = [e["epoch"] for e in epochs]
    fig = go.Figure()
    for key, name in (("train_error", train_label), ("test_error", test_label)):
        if any(key in e for e in epochs):
            fig.add_trace(go.Scatter(x=x, y=[e.get(key) for e in epochs], mode="lines+markers", name=name,
                                     hovertemplate="epoch %{x}<br>%{y:.2f} %<extra></extra>"))
    fig.update_xaxes(title="epoch", dtick=1 if len(x) <= 20 else None)
    fig.update_yaxes(title="error (%)", rangemode="tozero")
    fig.update_layout(height=320, legend={"orientation": "h", "y": -0.3}, **LAYOUT)
    return fig


def confusion_matrix(counts: np.ndarray, title: str, measured_on: str, height: int = 540) -> go.Figure:
    """A 10x10 confusion matrix (rows = true class, columns = predicted class) as a heatmap of the errors.

    The colour shows the off-diagonal (wrong) counts only, so a few errors are not washed out by the ~100 right
    answers per class; every cell carries its count as text. A transparent square marker on each cell takes the
    hover and the click, because Streamlit's ``on_select`` reports nothing for clicks on heatmap traces.
    """
    counts = np.asarray(counts)
    n = counts.shape[0]
    errors = counts.astype(np.float64)
    np.fill_diagonal(errors, np.nan)
    true, pred = np.indices(counts.shape)
    kind = np.where(true == pred, "right", "wrong")
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=errors, x=list(range(n)), y=list(range(n)), colorscale=ERRORS, zmin=0,
                             zmax=max(1.0, float(np.nanmax(errors))), xgap=2, ygap=2, hoverinfo="skip",
                             colorbar={"thickness": 12, "title": {"text": "errors"}}))
    fig.add_trace(go.Scatter(
        x=pred.ravel(), y=true.ravel(), mode="markers+text", text=[str(c) if c else "" for c in counts.ravel()],
        textfont={"size": 12, "color": "#444"},
        customdata=np.stack([true.ravel(), pred.ravel(), kind.ravel(), counts.ravel()], axis=-1),
        marker={"symbol": "square", "size": 28, "color": "rgba(0,0,0,0)"}, showlegend=False,
        selected={"marker": {"color": "rgba(31,78,156,0.35)"}},
        unselected={"marker": {"opacity": 1}, "textfont": {"color": "#444"}},
        hovertemplate=("true %{customdata[0]} → predicted %{customdata[1]}<br>%{customdata[3]} digit(s), %{customdata[2]}"
                       f"<br>{measured_on}<extra></extra>"),
    ))
    fig.update_xaxes(title="predicted class", dtick=1, side="top", showgrid=False, zeroline=False, constrain="domain",
                     range=[-0.5, n - 0.5])
    fig.update_yaxes(title="true class", dtick=1, range=[n - 0.5, -0.5], scaleanchor="x", showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_layout(title=title, height=height, plot_bgcolor="#f7f7f7", clickmode="event+select", dragmode=False,
                      **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 70, "b": 10}})
    return fig
