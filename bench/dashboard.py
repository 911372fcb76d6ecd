"""Server-side cost of the dashboard's interactions, measured on the pages' own code path.

One invocation measures, for the shipped LeNet-5 models:

* **interaction**: what one drawing costs the server -- ``prepare_digit`` of a 280x280 RGBA
  canvas, ``resources.probe`` (predict + every layer's activations), every figure the Draw and
  Feature-maps pages build for it, and their JSON (what Streamlit sends to the browser);
* **page run**: the whole Feature maps script under ``streamlit.testing`` (Streamlit's own
  overhead included), the current image set as the canvas sets it;
* **retrieval**: top-6 nearest neighbours over a 60,000 x 84 bank (``convnets.benchmark_nearest``);
* **first page**: seconds from a healthy server (started as ``convnet-lab app`` starts it) to
  the Draw page's title, and to its first chart, in headless Chromium (skipped without chromium /
  playwright).

Each is reported as a median and as the ratio to the issue's budget (50 ms, 50 ms, 10 ms, 3 s);
a ratio below 1 is within budget. Run from the repository root::

    python bench/dashboard.py [--repeats 30] [--threads 2] [--no-browser]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import plotly.io
import plotly.tools
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "dashboard"), str(ROOT / "tests")]  # tests/browser_check.py

import plots  # noqa: E402
import resources  # noqa: E402

from convnets.digits import prepare_digit  # noqa: E402
from convnets.retrieval import benchmark_nearest  # noqa: E402

BUDGET_MS = {"interaction": 50.0, "page run": 50.0, "retrieval": 10.0}
FIRST_PAGE_BUDGET_S = 3.0


def canvas_seven() -> np.ndarray:
    """A 280x280 RGBA canvas with a white '7' stroked on black, as streamlit-drawable-canvas returns it."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    pen.line([(70, 60), (210, 60), (120, 230)], fill=(255, 255, 255, 255), width=18, joint="curve")
    return np.asarray(image)


def interaction(name: str, canvas: np.ndarray) -> int:
    """Everything the server computes for one new drawing; returns the bytes of figure JSON built."""
    steps = prepare_digit(canvas)
    result = resources.probe(name, steps.centred)
    acts = result.activations
    figures = [plots.bars(result.probabilities, "Probabilities", "digit", "probability", highlight=0, fmt=".2%")]
    for layer, columns in (("input", 1), ("C1", 6), ("S2", 6), ("C3", 8), ("S4", 8)):
        figures.append(plots.feature_maps(acts[layer], layer, columns))
    figures.append(plots.bars(acts["C5"].reshape(-1), "C5", "unit", "activation"))
    figures.append(plots.bitmap(acts["F6"].reshape(-1), "F6"))
    figures.append(plots.bars(acts["output"], "output", "digit", "score"))
    # what st.plotly_chart does with each figure before it is sent (streamlit/elements/plotly_chart.py)
    return sum(len(plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True),
                                     validate=False)) for figure in figures)


def median_ms(function, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), times


def page_run_ms(name: str, image: np.ndarray, repeats: int) -> float:
    """Median seconds of a full Feature maps script run under streamlit.testing, after a warm-up run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "feature_maps.py"), default_timeout=120)
    at.session_state["model_name"] = name
    at.session_state["current_digit"] = {"image": image, "source": "a drawing", "label": None}
    at.run()  # warm-up: loads the model into the cache
    if at.exception:
        raise SystemExit(f"the Feature maps page failed: {at.exception[0].message}")
    return median_ms(at.run, repeats)[0]


def first_page_seconds() -> tuple[float, float] | None:
    """Seconds from a healthy server to the Draw page's title, and to its first chart, in a fresh browser.

    None without chromium/playwright. The first chart waits for plotly.js, which Streamlit loads lazily.
    """
    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium.is_file():
        return None
    import browser_check

    runs = Path(__import__("tempfile").mkdtemp(prefix="bench_runs_"))
    app = browser_check.start_app(runs)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                                 args=browser_check.CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(browser_check.URL, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Draw & predict", level=1).wait_for(timeout=60_000)
            title = time.perf_counter() - start
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
            chart = time.perf_counter() - start
            browser.close()
    finally:
        browser_check.stop_app(app)
    return title, chart


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the app runs with torch's default)")
    parser.add_argument("--no-browser", action="store_true", help="skip the first-page timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    canvas = canvas_seven()
    rows = []
    for name in resources.MODEL_NAMES:
        interaction(name, canvas)  # warm-up: model load, first figures
        ms, _ = median_ms(lambda name=name: interaction(name, canvas), args.repeats)
        rows.append((f"interaction ({name})", ms, BUDGET_MS["interaction"], "ms"))
        ms = page_run_ms(name, prepare_digit(canvas).centred, max(5, args.repeats // 3))
        rows.append((f"page run, Feature maps ({name})", ms, BUDGET_MS["page run"], "ms"))
    nearest = benchmark_nearest()
    rows.append(("top-6 retrieval over 60,000 x 84 (norms cached)", nearest["single_precomputed_norms_ms"],
                 BUDGET_MS["retrieval"], "ms"))
    if not args.no_browser:
        shown = first_page_seconds()
        if shown is not None:
            rows.append(("first page: title shown (headless Chromium)", shown[0], FIRST_PAGE_BUDGET_S, "s"))
            rows.append(("first page: first chart drawn", shown[1], FIRST_PAGE_BUDGET_S, "s"))
    print(f"{'measure':45s} {'median':>10s} {'budget':>8s} {'ratio':>6s}")
    for label, value, budget, unit in rows:
        print(f"{label:45s} {value:9.1f}{unit:1s} {budget:7.0f}{unit:1s} {value / budget:6.2f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ratio = median / budget (< 1: within budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
