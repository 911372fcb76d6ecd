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


def invisible() -> go.Figure:
    """An empty, transparent figure 10 pixels high (plotly's least): drawing it makes the browser fetch plotly.js early."""
    hidden = {"visible": False}
    return go.Figure(layout={"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": hidden, "yaxis": hidden,
                             "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"})


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


def _image_layout(title: str, height: int, ticks: bool = False) -> dict:
    """Layout of an image-like heatmap (square pixels, row 0 on top), passed whole to ``go.Figure``.

    Building a figure in one call, not with ``update_*`` calls, is what keeps a page's figures
    within the per-interaction budget (bench/dashboard.py): each update re-validates the figure.
    """
    axis = {"showgrid": False, "zeroline": False, "constrain": "domain", "showticklabels": ticks}
    return {"title": title, "height": height, "plot_bgcolor": "rgba(0,0,0,0)", **LAYOUT, "xaxis": axis,
            "yaxis": {**axis, "autorange": "reversed", "scaleanchor": "x"}}


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
    heatmap = go.Heatmap(
        z=mosaic, customdata=custom, colorscale=DIVERGING if signed else SEQUENTIAL,
        zmid=0 if signed else None, zmin=-peak if signed else 0, zmax=peak,
        hovertemplate=(f"{label} %{{customdata[0]}}<br>row %{{customdata[1]}}, col %{{customdata[2]}}"
                       "<br>value %{z:.4f}<extra></extra>"),
        hoverongaps=False, colorbar={"thickness": 12},
    )
    auto = int(900 * mosaic.shape[0] / mosaic.shape[1]) + 60
    return go.Figure(heatmap, layout=_image_layout(title, height or max(160, min(auto, 520))))


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
    heatmap = go.Heatmap(
        z=image, colorscale=DIVERGING, zmid=0, zmin=-peak, zmax=peak, xgap=1, ygap=1,
        hovertemplate="row %{y}, col %{x}<br>value %{z:.3f}<extra></extra>", colorbar={"thickness": 10},
        showscale=showscale,
    )
    return go.Figure(heatmap, layout=_image_layout(title, height))


def bars(values: Sequence[float], title: str, x_title: str, y_title: str, highlight: int | None = None,
         labels: Sequence[str] | None = None, fmt: str = ".4f", height: int = 300) -> go.Figure:
    """A bar chart with hover values; ``highlight`` colours one bar."""
    values = np.asarray(values, dtype=np.float64)
    x = list(labels) if labels is not None else [str(i) for i in range(len(values))]
    colours = ["#d62728" if i == highlight else "#4c78a8" for i in range(len(values))]
    bar = go.Bar(x=x, y=values, marker_color=colours, hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y:{fmt}}}<extra></extra>")
    return go.Figure(bar, layout={"title": title, "height": height, **LAYOUT, "xaxis": {"title": x_title, "type": "category"},
                                  "yaxis": {"title": y_title}})


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


PALETTE = ("#1f4e9c", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2")  # distinct lines


def curves(traces: Sequence[dict], title: str, x_title: str, y_title: str, *, hline: tuple[float, str] | None = None,
           y_format: str = ".2f", y_suffix: str = "", log_y: bool = False, height: int = 360,
           x_dtick: float | None = None) -> go.Figure:
    """Several named curves on one chart, e.g. runs compared; ``hline`` = (value, label) draws a dashed reference line;
    ``x_dtick`` the x ticks' step (default: one per whole x up to 20, e.g. epochs, else plotly's).

    Each trace: ``name``, ``x``, ``y``; optional ``color``, ``dash``, ``width``, ``opacity``, ``group`` (legend group),
    ``markers`` (bool).
    """
    fig = go.Figure()
    for t in traces:
        fig.add_trace(go.Scatter(
            x=list(t["x"]), y=list(t["y"]), name=t["name"], mode="lines+markers" if t.get("markers") else "lines",
            line={"color": t.get("color"), "dash": t.get("dash", "solid"), "width": t.get("width", 2)},
            opacity=t.get("opacity", 1.0), legendgroup=t.get("group"),
            hovertemplate=f"{t['name']}<br>{x_title} %{{x:,.4~g}}<br>{y_title} %{{y:{y_format}}}{y_suffix}<extra></extra>"))
    if hline is not None:
        fig.add_hline(y=hline[0], line={"dash": "dash", "color": "#888", "width": 1}, annotation_text=hline[1],
                      annotation_position="top right")
    xs = [x for t in traces for x in t["x"]]
    whole = bool(xs) and all(float(x).is_integer() for x in xs) and max(xs) <= 20  # epochs: one tick each
    fig.update_xaxes(title=x_title, dtick=x_dtick or (1 if whole else None))
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear", rangemode="normal" if log_y else "tozero",
                     dtick=1 if log_y else None)  # log: a tick per power of ten
    fig.update_layout(title=title, height=height, legend={"orientation": "h", "y": -0.25}, hovermode="closest",
                      **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 50, "b": 10}})
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


CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf")  # category10, one per digit class


def embedding_map(coords: np.ndarray, labels: np.ndarray, title: str, query: np.ndarray | None = None,
                  neighbours: Sequence[int] = (), distances: Sequence[float] = (), explained: Sequence[float] | None = None,
                  query_name: str = "query", height: int = 560) -> go.Figure:
    """Embeddings (N, 2) coloured by class; the query a big star, its neighbours ringed on top; hover = index, label."""
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    fig = go.Figure()
    for cls in range(10):
        keep = labels == cls
        fig.add_trace(go.Scatter(
            x=coords[keep, 0], y=coords[keep, 1], mode="markers", name=str(cls), customdata=index[keep],
            marker={"size": 5, "color": CLASS_COLOURS[cls], "opacity": 0.5},
            hovertemplate=f"training digit #%{{customdata}}<br>label {cls}<extra></extra>"))
    if query is not None:
        fig.add_trace(go.Scatter(
            x=[query[0]], y=[query[1]], mode="markers", name=query_name,
            marker={"symbol": "star", "size": 26, "color": "gold", "opacity": 0.85, "line": {"color": "black", "width": 1.5}},
            hovertemplate=f"{query_name}<extra></extra>"))
    if len(neighbours):
        picked = np.asarray(neighbours)
        custom = np.stack([picked, labels[picked], np.asarray(distances, dtype=np.float64), np.arange(1, len(picked) + 1)], -1)
        fig.add_trace(go.Scatter(
            x=coords[picked, 0], y=coords[picked, 1], mode="markers", name=f"{len(picked)} nearest",
            marker={"size": 12, "color": [CLASS_COLOURS[c] for c in labels[picked]], "line": {"color": "black", "width": 2}},
            customdata=custom,
            hovertemplate=("neighbour %{customdata[3]:.0f}: training digit #%{customdata[0]:.0f}<br>"
                           "label %{customdata[1]:.0f}, distance %{customdata[2]:.3f}<extra></extra>")))
    share = list(explained) if explained is not None else [None, None]
    for axis, part, update in (("PC1", share[0], fig.update_xaxes), ("PC2", share[1], fig.update_yaxes)):
        update(title=f"{axis} ({part:.0%} of the variance)" if part is not None else axis, zeroline=False)
    fig.update_layout(title=title, height=height, legend={"title": {"text": "class"}, "itemsizing": "constant"},
                      hovermode="closest", plot_bgcolor="#fafafa", **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 50, "b": 10}})
    return fig


# --- Invariance lab ---

CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf")  # one colour per digit class (D3's ten)


CURRENT_LINE = {"color": "#1f4e9c", "dash": "dot", "width": 1.5}  # the slider's level on a sweep


def invariance_sweep(levels: np.ndarray, predictions: np.ndarray, confidences: np.ndarray, title: str, x_title: str,
                     level_text: Sequence[str], current: float | None = None, truth: int | None = None,
                     truth_probability: np.ndarray | None = None, height: int = 340) -> go.Figure:
    """A sweep: confidence as a line, the predicted class as marker colour (legend) and as text where it changes.

    With ``truth`` the probability of the true class is a dashed line; ``current`` marks the slider's level.
    """
    levels, predictions = np.asarray(levels, dtype=np.float64), np.asarray(predictions)
    confidences = np.asarray(confidences, dtype=np.float64)
    changes = np.r_[True, predictions[1:] != predictions[:-1]]
    fig = go.Figure(go.Scatter(x=levels, y=confidences, mode="lines", line={"color": "#9a9a9a", "width": 1.5},
                               name="confidence", hoverinfo="skip"))
    if truth is not None and truth_probability is not None:
        fig.add_trace(go.Scatter(x=levels, y=truth_probability, mode="lines", line={"color": "#444", "dash": "dash"},
                                 name=f"P(true class {truth})", customdata=list(level_text),
                                 hovertemplate=f"%{{customdata}}<br>P({truth}) %{{y:.1%}}<extra></extra>"))
    for cls in np.unique(predictions):
        rows = np.flatnonzero(predictions == cls)
        fig.add_trace(go.Scatter(
            x=levels[rows], y=confidences[rows], mode="markers+text", name=f"predicted {cls}",
            marker={"color": CLASS_COLOURS[int(cls) % 10], "size": 8, "line": {"width": 0.5, "color": "white"}},
            text=[str(cls) if changes[i] else "" for i in rows], textposition="top center",
            textfont={"color": CLASS_COLOURS[int(cls) % 10], "size": 13},
            customdata=[level_text[i] for i in rows],
            hovertemplate=f"%{{customdata}}<br>predicted {cls}, confidence %{{y:.1%}}<extra></extra>",
        ))
    if current is not None:
        fig.add_vline(x=current, line=CURRENT_LINE)
    fig.update_xaxes(title=x_title, range=[levels.min() - 0.02 * np.ptp(levels), levels.max() + 0.02 * np.ptp(levels)])
    fig.update_yaxes(title="confidence (softmax)", range=[0, 1.12], tickformat=".0%")
    fig.update_layout(title=title, height=height, legend={"orientation": "h", "y": -0.25},
                      **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 50, "b": 10}})
    return fig


def sweep_animation(images: np.ndarray, probabilities: np.ndarray, captions: Sequence[str], level_text: Sequence[str],
                    start: int = 0, frame_ms: int = 90, height: int = 420) -> go.Figure:
    """The transformed digit and its ten probabilities, one plotly frame per level, with play/pause and a slider.

    The probabilities are horizontal bars drawn as a second heatmap: plotly.js loses a heatmap that is animated
    together with a bar trace, and it does not decode numpy's base64 arrays inside frames, hence the plain lists.
    """
    from plotly.subplots import make_subplots

    images = np.asarray(images, dtype=np.float32)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    cells = 50  # bar resolution: 2 % per cell
    bar_colours = [[0.0, "white"], [0.33, "white"], [0.33, "#c9c9c9"], [0.67, "#c9c9c9"], [0.67, "#1f4e9c"],
                   [1.0, "#1f4e9c"]]

    def traces(i: int) -> list:
        winner = int(probabilities[i].argmax())
        filled = np.rint(probabilities[i] * cells).astype(int)
        bars = np.zeros((10, cells))
        text = np.full((10, cells), "", dtype=object)
        for d in range(10):
            bars[d, :filled[d]] = 1.0 if d == winner else 0.5
            if probabilities[i, d] >= 0.005:  # no column of '0%'
                text[d, filled[d] + 3 if filled[d] <= cells - 8 else filled[d] - 4] = f"{probabilities[i, d]:.0%}"
        return [go.Heatmap(z=images[i].round(3).tolist(), colorscale=INK, zmin=0, zmax=1, showscale=False,
                           hovertemplate="row %{y}, col %{x}<br>%{z:.2f}<extra></extra>"),
                go.Heatmap(z=bars.tolist(), text=text.tolist(), texttemplate="%{text}", colorscale=bar_colours, zmin=0,
                           zmax=1, showscale=False, ygap=4, hoverinfo="skip", textfont={"size": 11})]

    fig = make_subplots(rows=1, cols=2, column_widths=[0.42, 0.58], horizontal_spacing=0.08)
    for col, trace in enumerate(traces(start), start=1):
        fig.add_trace(trace, row=1, col=col)
    fig.frames = [go.Frame(data=traces(i), traces=[0, 1], name=str(i), layout={"title": {"text": captions[i]}})
                  for i in range(len(images))]
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain", row=1, col=1)
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x",
                     constrain="domain", row=1, col=1)
    fig.update_xaxes(title="probability (softmax)", tickvals=[-0.5, cells / 2 - 0.5, cells - 0.5],
                     ticktext=["0%", "50%", "100%"], range=[-0.5, cells + 0.5], showgrid=False, zeroline=False, row=1, col=2)
    fig.update_yaxes(title="digit", tickvals=list(range(10)), ticktext=[str(d) for d in range(10)], autorange="reversed",
                     showgrid=False, zeroline=False, row=1, col=2)
    play = {"frame": {"duration": frame_ms, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    jump = {"frame": {"duration": 0, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        title={"text": captions[start]}, height=height, showlegend=False, plot_bgcolor="rgba(0,0,0,0)",
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.08, "xanchor": "left", "yanchor": "top",
                      "pad": {"r": 10, "t": 10}, "showactive": False,
                      "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ Pause", "method": "animate", "args": [[None], {**jump, "frame": {
                                      "duration": 0, "redraw": False}}]}]}],
        sliders=[{"active": start, "x": 0.2, "len": 0.8, "y": -0.02, "yanchor": "top", "pad": {"t": 30},
                  "currentvalue": {"prefix": "level ", "font": {"size": 13, "color": "#31333f"}},
                  "font": {"color": "rgba(0,0,0,0)", "size": 1},  # 40-60 step labels would overlap: hide them
                  "steps": [{"label": level_text[i], "method": "animate", "args": [[str(i)], jump]}
                            for i in range(len(images))]}],
    )
    return fig


def marked_at(fig: go.Figure, x: float) -> go.Figure:
    """A copy of ``fig`` (e.g. a cached :func:`invariance_sweep` built without ``current``) with the dotted line that
    ``current=x`` draws; ``fig`` is left unchanged."""
    layout = fig.layout.to_plotly_json()  # a deep copy
    layout["shapes"] = [*layout.get("shapes", []), {"line": dict(CURRENT_LINE), "type": "line", "x0": x, "x1": x,
                                                    "xref": "x", "y0": 0, "y1": 1, "yref": "y domain"}]
    return go.Figure(data=[trace.to_plotly_json() for trace in fig.data], layout=layout, _validate=False)


def starting_at(animation: go.Figure, start: int) -> go.Figure:
    """:func:`sweep_animation`'s figure opening on frame ``start`` instead: its traces, title and slider step.

    A new figure that shares ``animation``'s frames instead of copying them (plotly re-validates every frame it is
    given, about as slow as building them), so ``animation`` can be built once and cached; change neither.
    """
    frame = animation.frames[start]
    layout = animation.layout.to_plotly_json()  # a deep copy
    layout["title"] = {**layout.get("title", {}), **frame.layout.title.to_plotly_json()}
    layout["sliders"][0]["active"] = start
    data = [{**old.to_plotly_json(), **new.to_plotly_json()} for old, new in zip(animation.data, frame.data, strict=True)]
    fig = go.Figure(data=data, layout=layout, _validate=False)  # the subplot axes from the first, the rest from the frame
    fig._frame_objs = animation._frame_objs  # shared read-only: the public setter would re-validate all of them
    return fig


def robustness_curves(levels: np.ndarray, accuracy: dict[str, np.ndarray], title: str, x_title: str,
                      level_text: Sequence[str], measured_on: str, height: int = 320) -> go.Figure:
    """Accuracy (percent) against the level of one transform, one line per model."""
    fig = go.Figure()
    for (name, values), colour in zip(accuracy.items(), ("#1f4e9c", "#d62728", "#2ca02c", "#9467bd"), strict=False):
        fig.add_trace(go.Scatter(x=np.asarray(levels, dtype=np.float64), y=100 * np.asarray(values), mode="lines+markers",
                                 name=name, line={"color": colour}, customdata=list(level_text),
                                 hovertemplate=(f"{name}<br>%{{customdata}}: %{{y:.1f}} % right"
                                                f"<br>{measured_on}<extra></extra>")))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="accuracy (%)", range=[0, 102])
    fig.update_layout(title=title, height=height, legend={"orientation": "h", "y": -0.3}, **LAYOUT)
    return fig


def perturbation(delta: np.ndarray, title: str, limit: float | None = None, height: int = 260) -> go.Figure:
    """A signed image (H, W), e.g. adversarial - original, in diverging colours: red adds ink, blue removes it, white is
    zero; the scale runs from -``limit`` to +``limit`` (default: the largest absolute value)."""
    values = np.asarray(delta, dtype=np.float64)
    peak = limit or _symmetric(values)
    heatmap = go.Heatmap(z=values, colorscale=DIVERGING, zmid=0, zmin=-peak, zmax=peak, colorbar={"thickness": 10},
                         hovertemplate="row %{y}, col %{x}<br>change %{z:+.3f}<extra></extra>")
    return go.Figure(heatmap, layout=_image_layout(title, height))


def kernel_mosaic(kernels: np.ndarray, columns: int, pixel: int = 8, gap: int = 3) -> np.ndarray:
    """RGB kernels (n, k, k, 3) in [0, 1] as one uint8 picture: a grid with white gaps, each weight a ``pixel``-wide
    square (nearest-neighbour upscaling, so a 5x5 kernel stays five crisp squares across)."""
    n, k, _, _ = kernels.shape
    rows, side = -(-n // columns), k * pixel
    mosaic = np.full((rows * (side + gap) - gap, columns * (side + gap) - gap, 3), 255, dtype=np.uint8)
    big = np.round(np.clip(kernels, 0, 1) * 255).astype(np.uint8).repeat(pixel, axis=1).repeat(pixel, axis=2)
    for index in range(n):
        r, c = divmod(index, columns)
        mosaic[r * (side + gap):r * (side + gap) + side, c * (side + gap):c * (side + gap) + side] = big[index]
    return mosaic


def rgb_picture(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB image, (H, W, 3) or (3, H, W), uint8 or float in [0, 1], scaled to ``size`` on its longer side: crisp
    pixels up (nearest neighbour), smooth down. Returns uint8 (h, w, 3)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    h, w = image.shape[:2]
    scale = size / max(h, w)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), resample))


def top_classes(top: Sequence[tuple[str, float]], title: str, height: int = 260) -> go.Figure:
    """Horizontal bars of the k most probable classes, the first on top."""
    names, probs = [n for n, _ in top][::-1], [p for _, p in top][::-1]
    bar = go.Bar(x=probs, y=names, orientation="h", marker_color=["#4c78a8"] * (len(top) - 1) + ["#d62728"],
                 hovertemplate="%{y}: %{x:.1%}<extra></extra>", text=[f"{p:.1%}" for p in probs], textposition="auto")
    return go.Figure(bar, layout={"title": title, "height": height, **LAYOUT,
                                  "xaxis": {"title": "probability (softmax)", "range": [0, 1], "tickformat": ".0%"},
                                  "yaxis": {"automargin": True}})


def layer_diagram(rows: Sequence[dict], title: str, height: int = 300) -> go.Figure:
    """The network as a row of blocks: a stack of squares per map layer (side ∝ map size), a bar per vector layer.

    ``rows``: ``convnets.layer_table`` rows as dicts (name, kind, output_shape, params, connections).
    """
    shapes, xs, ys, hovers, labels = [], [], [], [], []
    for i, row in enumerate(rows):
        shape, x = list(row["output_shape"]), 1.6 * i
        if len(shape) == 3 and shape[1] * shape[2] > 1:
            maps, side = shape[0], 0.25 + 0.95 * shape[1] / 32
            for k in reversed(range(min(maps, 6))):  # up to six squares, offset like a deck of cards
                dx, dy = 0.07 * k, 0.07 * k
                shapes.append({"type": "rect", "x0": x - side / 2 + dx, "x1": x + side / 2 + dx, "y0": -side / 2 + dy,
                               "y1": side / 2 + dy, "line": {"color": "#1f4e9c", "width": 1},
                               "fillcolor": "#dbe6f6" if row["params"] else "#f0f0f0"})
            label = f"<b>{row['name']}</b><br>{maps}@{shape[1]}x{shape[2]}"
        else:
            units = int(np.prod(shape))
            tall = 0.3 + 0.35 * np.log10(max(units, 1))
            shapes.append({"type": "rect", "x0": x - 0.1, "x1": x + 0.1, "y0": -tall / 2, "y1": tall / 2,
                           "line": {"color": "#b35806", "width": 1}, "fillcolor": "#fde0c5"})
            label = f"<b>{row['name']}</b><br>{units}"
        xs.append(x)
        ys.append(0)
        labels.append(label)
        hovers.append(f"{row['name']}: {row['kind']}<br>output {'x'.join(map(str, shape))}<br>"
                      f"{row['params']:,} params · {row['connections']:,} connections")
    marks = go.Scatter(x=xs, y=ys, mode="markers", marker={"size": 28, "opacity": 0}, hovertext=hovers,
                       hoverinfo="text", showlegend=False)
    text = go.Scatter(x=xs, y=[-1.05] * len(xs), mode="text", text=labels, textposition="bottom center",
                      hoverinfo="skip", showlegend=False)
    hidden = {"visible": False, "fixedrange": True}
    return go.Figure([marks, text], layout={"title": title, "height": height, "shapes": shapes, **LAYOUT,
                                            "plot_bgcolor": "rgba(0,0,0,0)",
                                            "xaxis": {**hidden, "range": [-0.9, 1.6 * len(rows) - 0.6]},
                                            "yaxis": {**hidden, "range": [-1.7, 1.0]}})


def _fade(rgb: str) -> list[list]:
    """A colour scale from transparent to ``rgb`` ("r, g, b"): only the high values cover what lies underneath."""
    return [[0.0, f"rgba({rgb}, 0)"], [0.15, f"rgba({rgb}, 0.15)"], [1.0, f"rgba({rgb}, 0.95)"]]


def attribution_overlay(image: np.ndarray, heatmap: np.ndarray, title: str, signed: bool, height: int = 280,
                        label: str = "attribution") -> go.Figure:
    """An attribution ``heatmap`` (H, W) over its input ``image`` ((H, W) grey or (H, W, 3) RGB in [0, 1]).

    A digit is drawn as grey ink on white. Unsigned maps fade from transparent to red; signed maps to red for the
    class and to blue against it, so the input stays visible where the map is near zero. Hover: pixel and value.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    image = np.asarray(image)
    if image.ndim == 3:
        under = go.Image(z=np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), hoverinfo="skip")
    else:
        paper = [[0.0, "white"], [1.0, "#555555"]]  # grey ink on white: red and blue both show over it
        under = go.Heatmap(z=image, colorscale=paper, zmin=0, zmax=1, showscale=False, hoverinfo="skip")
    peak = _symmetric(heat)
    if signed:
        scale = [[0.0, "rgba(31, 78, 156, 0.95)"], [0.5, "rgba(255, 255, 255, 0)"], [1.0, "rgba(214, 39, 40, 0.95)"]]
        bounds = {"zmin": -peak, "zmax": peak, "zmid": 0}
    else:
        scale, bounds = _fade("214, 39, 40"), {"zmin": 0, "zmax": peak}
    over = go.Heatmap(z=heat, colorscale=scale, **bounds, colorbar={"thickness": 10},
                      hovertemplate=f"row %{{y}}, col %{{x}}<br>{label} %{{z:.4g}}<extra></extra>")
    return go.Figure([under, over], layout=_image_layout(title, height))
