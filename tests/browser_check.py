"""Browser check of the dashboard: tests/test_browser.py runs it; it also runs by hand.

Starts the app as the README does (``convnet-lab app``, here on localhost:8599, with a
temporary runs folder), opens it in headless Chromium through Playwright, draws a digit on
the canvas with the mouse, uploads a dark-on-light picture and two bad files, visits every
page in the sidebar with both shipped models, hovers a feature map, clicks a confusion-matrix
cell, picks a CIFAR-10 sample image on the AlexNet page (kernel grid, six nearest training
images), checks Why this answer (five maps, deletion curves; another class), Adversarial digits
(original, perturbation, adversarial, ε; PGD) and Paper experiments (ReLU vs tanh, conditions;
another results file), and writes a screenshot per step. Fails (exit 1) if any page shows a
Streamlit exception box or a step does not do what it should.

    python tests/browser_check.py            # Debian's chromium at /usr/bin/chromium
    python tests/browser_check.py --chromium /path/to/chrome --shots /tmp/shots --port 8599
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw
from playwright.sync_api import Frame, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
PORT = 8599
URL = f"http://localhost:{PORT}"
FIRST_PAGE = "Draw & predict"
HEADINGS = {"Paper experiments": "The AlexNet paper's experiments"}  # a page whose title is not its sidebar name
SLOW = {"Why this answer": 240, "Adversarial digits": 420}  # s: five maps, or accuracy-vs-ε curves of both models
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]


def start_app(runs_dir: Path) -> subprocess.Popen:
    """Start the app the README's way (``convnet-lab app``) and wait until it is healthy."""
    launcher = Path(sys.executable).with_name("convnet-lab")
    command = [str(launcher), "app", "--port", str(PORT)] if launcher.is_file() else \
        [sys.executable, "-m", "training.cli", "app", "--port", str(PORT)]
    log = open(Path(tempfile.gettempdir()) / "browser_check_streamlit.log", "w")  # noqa: SIM115 - lives as long as the app
    env = {**os.environ, "CONVNET_LAB_RUNS": str(runs_dir), "CONVNET_LAB_MNIST": "sample",  # worst_confusion reads the sample
           "CONVNET_LAB_CIFAR": ""}  # the AlexNet page on the shipped CIFAR-10 sample, wherever CIFAR-10 is
    app = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise SystemExit(f"streamlit exited with {app.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{URL}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return app
        except OSError:
            time.sleep(0.5)
    stop_app(app)
    raise SystemExit(f"streamlit did not become healthy on {URL} within 90 s; see {log.name}")


def stop_app(app: subprocess.Popen) -> None:
    """Stop the streamlit process group this script started."""
    if app.poll() is None:
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)


def stop_worker(runs_dir: Path) -> None:
    """Stop a background worker the app may have started in the temporary runs folder."""
    pid_file = runs_dir / "worker.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def slug(title: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")


def settle(page: Page, heading: str | None = None, timeout_s: float = 60) -> bool:
    """Wait for the page's title (when given), then until the script run has finished, then for charts to draw.
    False if the script was still running after ``timeout_s``."""
    if heading:
        page.get_by_role("heading", name=heading, level=1).wait_for(timeout=timeout_s * 1000)
    page.wait_for_timeout(500)
    try:  # the status widget ("Running…", "Stop") is shown only while the script runs
        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        print("  (still running after", timeout_s, "s; taking the screenshot anyway)")
        return False
    page.wait_for_timeout(1200)
    return True


def shoot(page: Page, shots: Path, name: str, failures: list[str]) -> None:
    """Screenshot the whole page (the main area scrolls, so grow the viewport to fit) and look for exceptions."""
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]') || document.body;
        return Math.max(main.scrollHeight, document.body.scrollHeight);
    }""")
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 40, 900), 7000)})
    page.wait_for_timeout(800)
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        failures.append(f"{name}: {exceptions.count()} exception box(es): {exceptions.first.inner_text()[:300]!r}")
    print(f"  {path}  ({'EXCEPTION' if exceptions.count() else 'ok'})")


def expand_nav(page: Page) -> None:
    """Past ten pages the sidebar lists the first ten and a 'View N more' button: show them all."""
    more = page.locator('[data-testid="stSidebarNavViewButton"]').filter(has_text="more")
    if more.count():
        more.click()


def go_to(page: Page, title: str) -> None:
    """Navigate through the sidebar, which keeps the session (and the current image)."""
    expand_nav(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(page, heading=HEADINGS.get(title, title), timeout_s=SLOW.get(title, 60))


def sidebar_pages(page: Page) -> list[str]:
    """The titles of every page in the sidebar navigation, in order."""
    expand_nav(page)
    links = page.locator('[data-testid="stSidebarNav"] a')
    # a link's text is its material icon's name (a ligature) on one line and the title on the next
    return [links.nth(i).inner_text().strip().splitlines()[-1].strip() for i in range(links.count())]


def find_canvas(page: Page) -> tuple[Page | Frame, str]:
    """The drawing canvas: fabric.js puts an 'upper-canvas' on top that takes the mouse. Search the page and its frames."""
    for _ in range(60):
        for scope in [page, *page.frames]:
            for selector in ("canvas.upper-canvas", "canvas"):
                try:
                    if scope.locator(selector).count():
                        return scope, selector
                except Exception:  # noqa: BLE001 - a detached frame; try the next one
                    continue
        page.wait_for_timeout(500)
    raise SystemExit("no drawing canvas found on the Draw & predict page")


def draw_seven(page: Page) -> None:
    """Draw a '7' with the mouse: a top bar, then a diagonal down to the bottom left."""
    scope, selector = find_canvas(page)
    box = scope.locator(selector).first.bounding_box()
    if box is None:
        raise SystemExit("the canvas has no bounding box (not visible?)")
    where = "the page" if scope is page else f"frame {scope.name or scope.url[:80]!r}"
    print(f"  canvas found in {where}: {selector} at {box}")
    x0, y0 = box["x"], box["y"]

    def at(fx: float, fy: float) -> tuple[float, float]:
        return x0 + fx * box["width"], y0 + fy * box["height"]

    page.mouse.move(*at(0.25, 0.22))
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(*at(0.25 + 0.5 * i / 20, 0.22))
    for i in range(1, 31):
        page.mouse.move(*at(0.75 - 0.3 * i / 30, 0.22 + 0.6 * i / 30))
    page.mouse.up()


def dark_on_light_png() -> Path:
    """A photo-like upload: a dark '3'-ish stroke on a light grey background."""
    path = Path(tempfile.gettempdir()) / "browser_check_upload.png"
    image = Image.new("RGB", (240, 320), (225, 222, 215))
    pen = ImageDraw.Draw(image)
    pen.arc([50, 30, 190, 160], start=-160, end=90, fill=(30, 30, 40), width=16)
    pen.arc([50, 150, 190, 290], start=-90, end=160, fill=(30, 30, 40), width=16)
    image.save(path)
    return path


def colour_png() -> Path:
    """A colour picture for the AlexNet page: a red hull and a white sail on blue water under a light sky."""
    path = Path(tempfile.gettempdir()) / "boat.png"
    image = Image.new("RGB", (320, 240), (150, 190, 235))
    pen = ImageDraw.Draw(image)
    pen.rectangle([0, 150, 320, 240], fill=(30, 80, 160))
    pen.polygon([(70, 150), (250, 150), (220, 185), (100, 185)], fill=(190, 40, 40))
    pen.polygon([(160, 40), (160, 145), (230, 145)], fill=(245, 245, 245))
    image.save(path)
    return path


def worst_confusion(model_name: str) -> tuple[int, int, int]:
    """(true, predicted, count) of the most frequent mistake of a shipped model on the held-out digits."""
    import numpy as np

    import convnets
    from training.data import load_sample
    from training.loop import predict

    model, _ = convnets.load_pretrained(model_name)
    data = load_sample()
    predictions = predict(model, data.test_x).numpy()
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (data.test_y.numpy(), predictions), 1)
    np.fill_diagonal(counts, 0)
    true, predicted = np.unravel_index(counts.argmax(), counts.shape)
    return int(true), int(predicted), int(counts[true, predicted])


def chart_titles(page: Page, at_least: int, timeout_s: float = 60) -> list[str]:
    """The titles of the main area's Plotly charts once ``at_least`` of them have drawn (fewer if they never do)."""
    charts = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot')
    try:
        charts.nth(at_least - 1).wait_for(timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pass
    return [" ".join((c.locator(".gtitle").first.text_content() or "").split()) if c.locator(".gtitle").count() else ""
            for c in charts.all()]


def metrics(page: Page) -> dict[str, str]:
    """The main area's st.metric widgets, label → value."""
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip(): m.locator('[data-testid="stMetricValue"]')
            .inner_text().strip() for m in page.locator('[data-testid="stMain"] [data-testid="stMetric"]').all()}


def expect(failures: list[str], where: str, ok: bool, what: str) -> None:
    if not ok:
        failures.append(f"{where}: {what}")


def no_alerts(page: Page, where: str, failures: list[str], kinds: tuple[str, ...] = ("Error", "Warning")) -> None:
    """Fail on st.error (and st.warning) boxes in the main area: the new pages say what went wrong in them."""
    for kind in kinds:
        boxes = page.locator(f'[data-testid="stMain"] [data-testid="stAlertContent{kind}"]')
        if boxes.count():
            failures.append(f"{where}: {kind.lower()} box {boxes.first.inner_text()[:200]!r}")


def pick(page: Page, label: str, avoid: str = "") -> str:
    """In the main area's selectbox ``label``, pick the first entry after the current one that does not start with
    ``avoid``; returns the entry's text."""
    page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label).first.click()
    entries = page.get_by_role("option")
    entries.first.wait_for(timeout=10_000)
    entry = next(e for e in entries.all()[1:] if not avoid or not e.inner_text().strip().startswith(avoid))
    text = entry.inner_text().strip()
    entry.click()
    return text


def selected(page: Page, label: str) -> str:
    """The value shown in the main area's selectbox ``label`` (a combobox whose input holds it)."""
    return page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label).first.input_value()


def check_attribution(page: Page, where: str, failures: list[str], class_name: str | None = None) -> None:
    """Five maps of one class, each with its deletion area, and the deletion chart of that class."""
    titles = chart_titles(page, 6, SLOW["Why this answer"])
    maps = [t for t in titles if " · " in t]
    names = {t.rsplit(" · ", 1)[1] for t in maps}
    expect(failures, where, len(titles) == 6 and len(maps) == 5, f"{len(maps)} maps in {len(titles)} charts {titles}, "
           "expected five maps and a deletion chart")
    expect(failures, where, len(names) == 1 and (class_name is None or names == {class_name}),
           f"the maps explain {names}, expected {class_name or 'one class'}")
    deletion = [t for t in titles if t.startswith("Deletion: probability of")]
    expect(failures, where, len(deletion) == 1 and names <= {deletion[0].split()[3]}, f"deletion chart {deletion}")
    auc = metrics(page)
    expect(failures, where, len(auc) == 5 and all(v.replace(".", "").isdigit() for v in auc.values()),
           f"deletion areas {auc}, expected five")
    no_alerts(page, where, failures)


def check_adversarial(page: Page, where: str, failures: list[str], method: str = "FGSM") -> None:
    """Original, perturbation (its ε in the title and a metric) and adversarial image; the accuracy-vs-ε chart."""
    titles = chart_titles(page, 2, SLOW["Adversarial digits"])
    captions = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').all_inner_texts()
    numbers = metrics(page)
    epsilon = numbers.get("ε needed", "")
    expect(failures, where, any(c.endswith(", as given") for c in captions) and
           any(c.endswith("+ perturbation") for c in captions), f"image captions {captions}: no original and adversarial")
    expect(failures, where, f"Perturbation (ε = {epsilon})" in titles and 0 < float(epsilon or 0) <= 0.5,
           f"ε needed {epsilon!r}, chart titles {titles}")
    expect(failures, where, numbers.get("Answer") != numbers.get("New answer") and "New answer" in numbers,
           f"answers {numbers}")
    expect(failures, where, any(t.startswith(f"Accuracy vs ε, {method} (") for t in titles),
           f"no {method} accuracy chart in {titles}")
    expect(failures, where, page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').count() == 1,
           "no table of both models")
    no_alerts(page, where, failures)


def check_experiments(page: Page, where: str, failures: list[str]) -> None:
    """The ReLU-vs-tanh chart with its metrics, the dropout charts, a conditions table per section."""
    titles = chart_titles(page, 3)
    numbers = metrics(page)
    main = page.locator('[data-testid="stMain"]')
    expect(failures, where, any(t.startswith("Training error per epoch, ") for t in titles) and len(titles) == 3,
           f"charts {titles}, expected the ReLU-vs-tanh chart and two dropout charts")
    expect(failures, where, {"ReLU to 25 %", "tanh to 25 %", "Measured: tanh ÷ ReLU epochs"} <= set(numbers),
           f"metrics {numbers}")
    expect(failures, where, main.get_by_text("Conditions", exact=True).count() == 2 and
           main.locator('[data-testid="stDataFrame"]').count() == 3, "not two conditions tables and the dropout table")
    no_alerts(page, where, failures, ("Error",))


def check_unit(page: Page, where: str, failures: list[str]) -> None:
    """The Unit page (from the sidebar): four sections, the weighted-sum table, nine top patches, the feature
    visualisation's numbers, the unit in the address; then, in a new tab (a new session), an address for a unit that
    does not exist: one error box that names the fix, and the rest of the page for a unit that does; then an AlexNet
    unit's address (a colour model: its top-9 test pictures), and a bad one."""
    main = page.locator('[data-testid="stMain"]')
    patches = [c for c in main.locator('[data-testid="stImageCaption"]').all_inner_texts() if c.startswith("#")]
    numbers = metrics(page)
    expect(failures, where, len(main.get_by_role("heading", level=3).all()) == 4 and len(patches) == 9,
           f"{len(patches)} top patches {patches}, headings {main.get_by_role('heading', level=3).all_inner_texts()}")
    expect(failures, where, {"Activation reached", "On the starting noise", "Best test digit"} <= set(numbers) and
           main.locator('[data-testid="stDataFrame"]').count() == 1, f"metrics {numbers}, or no weighted-sum table")
    expect(failures, where, "layer=" in page.url and "unit=" in page.url, f"the address {page.url} names no unit")
    no_alerts(page, where, failures)
    bad = page.context.browser.new_page()
    try:
        bad.set_viewport_size({"width": 1400, "height": 1000})
        for address, error, best in (("layer=C3&unit=99", "unit 99 does not exist", "Best test digit"),
                                     ("model=alexnet-cifar&layer=conv3&unit=17", None, "Best test picture"),
                                     ("model=alexnet-cifar&layer=conv5&unit=128", "unit 128 does not exist",
                                      "Best test picture")):
            bad.goto(f"{URL}/unit?{address}", wait_until="domcontentloaded")
            settle(bad, heading="Unit page", timeout_s=180)
            bad.locator('[data-testid="stMain"] [data-testid="stMetric"]').first.wait_for(timeout=180_000)
            try:  # the nine patches and their metric may still be on their way to the browser (a loaded machine)
                bad.wait_for_function(
                    """best => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImageCaption"]')]
                              .filter(c => c.innerText.startsWith('#')).length >= 9
                              && document.querySelector('[data-testid="stMain"]').innerText.includes(best)""",
                    arg=best, timeout=60_000, polling=250)
            except PlaywrightTimeout:
                pass  # judged below, with what is there
            errors = bad.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]').all_inner_texts()
            shown = [c for c in bad.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').all_inner_texts()
                     if c.startswith("#")]
            expect(failures, f"{where}, address ?{address}", (len(errors) == 1 and error in errors[0] if error else
                                                               not errors) and len(shown) == 9
                   and bad.locator('[data-testid="stException"]').count() == 0 and best in metrics(bad),
                   f"error boxes {errors}; the rest of the page: {len(shown)} top patches, metrics {metrics(bad)}")
    finally:
        bad.close()


def interact(page: Page, title: str, shots: Path, failures: list[str]) -> None:
    """One interaction on each new page (lenet5-modern picked): another class, PGD, another results file."""
    name = f"08_{slug(title)}_"
    if title == "Why this answer":
        predicted = selected(page, "Explain the class").split("the predicted class: ")[-1].split()[0]
        other = pick(page, "Explain the class", avoid=predicted + " ")  # e.g. '0 (0.1%)'
        print("  explaining class", other)
        expect(failures, name, settle(page, timeout_s=SLOW[title]), "still running")
        check_attribution(page, name + "class", failures, other.split()[0])
        shoot(page, shots, name + "other_class", failures)
    elif title == "Adversarial digits":
        page.locator('[data-testid="stMain"] [data-testid="stRadio"]').get_by_text("PGD", exact=False).click()
        expect(failures, name, settle(page, timeout_s=SLOW[title]), "still running")
        check_adversarial(page, name + "pgd", failures, "PGD")
        shoot(page, shots, name + "pgd", failures)
    elif title == "Paper experiments":
        other = pick(page, "Results file")
        print("  results file", other)
        settle(page)
        shown = selected(page, "Results file")
        expect(failures, name, other == shown and "ReLU to 25 %" in metrics(page), f"picking {other} shows {shown!r}")
        no_alerts(page, name + "other_file", failures, ("Error",))
        shoot(page, shots, name + "other_file", failures)


CHECKS = {"Why this answer": check_attribution, "Adversarial digits": check_adversarial,
          "Paper experiments": check_experiments, "Unit page": check_unit}


def click_confusion_cell(page: Page, shots: Path, failures: list[str]) -> None:
    """On Misclassified (lenet5-modern is picked by now), click the biggest off-diagonal cell; the gallery must follow."""
    true, predicted, count = worst_confusion("lenet5-modern")
    go_to(page, "Misclassified")
    area = page.locator('[data-testid="stPlotlyChart"]').first.locator(".nsewdrag").first
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    page.mouse.click(box["x"] + box["width"] * (predicted + 0.5) / 10, box["y"] + box["height"] * (true + 0.5) / 10)
    settle(page)
    wanted = f"misclassified held-out digits (true {true}, predicted {predicted})"
    if wanted not in page.locator('[data-testid="stMain"]').inner_text():
        failures.append(f"clicking cell true {true} / predicted {predicted} did not filter the gallery ({wanted!r} missing)")
    shoot(page, shots, "16_misclassified_cell_clicked", failures)
    print(f"  clicked true {true} → predicted {predicted} ({count} digit(s))")
    buttons = page.get_by_role("button", name="Use", exact=True)
    if buttons.count() != count:
        failures.append(f"the filtered gallery shows {buttons.count()} digits, the cell says {count}")
    if buttons.count():
        first = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').first.inner_text()  # '#279: 2 → 8, …'
        buttons.first.click()
        settle(page)
        caption = page.locator('[data-testid="stSidebar"]').inner_text()
        if f"Current image: held-out digit {first.split(':')[0]}" not in caption:
            failures.append("Use did not make the digit the current image (sidebar caption)")
        shoot(page, shots, "17_misclassified_used", failures)


def alexnet_page(page: Page, shots: Path, failures: list[str]) -> None:
    """The AlexNet page offline: the conv1 kernel grid, a sample test image picked in the gallery with its five classes,
    feature maps and six nearest training images, the other kernel scaling, and an uploaded picture."""
    go_to(page, "AlexNet")
    main = page.locator('[data-testid="stMain"]')
    captions = main.locator('[data-testid="stImageCaption"]')
    if captions.filter(has_text="kernels 0–47").count() != 1 or main.get_by_text("mean chroma").count() == 0:
        failures.append("the AlexNet page shows no conv1 kernel grid ('kernels 0–47') with its colour numbers")
    main.get_by_role("button", name="Use", exact=True).nth(5).click()  # the gallery's sixth test image, #5
    page.get_by_role("heading", name="Current picture: test image #5 of the CIFAR-10 sample").wait_for(timeout=60_000)
    settle(page)
    if captions.filter(has_text="· distance").count() != 6:
        failures.append(f"{captions.filter(has_text='· distance').count()} nearest training images shown, expected 6")
    shown = main.locator('[data-testid="stPlotlyChart"]').count()
    if shown != 3:  # five most probable classes, conv1 maps, conv5 maps
        failures.append(f"the AlexNet page shows {shown} charts for a test image, expected 3")
    shoot(page, shots, "18_alexnet_sample_image", failures)
    main.get_by_text("one scale for all kernels").click()
    settle(page)
    if main.get_by_text("One scale for the whole layer").count() == 0:
        failures.append("choosing one scale for all kernels did not redraw the kernels")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(colour_png()))
    page.get_by_role("heading", name="Current picture: your upload 'boat.png'").wait_for(timeout=60_000)
    settle(page)
    if main.locator('[data-testid="stPlotlyChart"]').count() != 3 or captions.filter(has_text="· distance").count() != 6:
        failures.append("an uploaded picture did not get its five classes, feature maps and six nearest training images")
    shoot(page, shots, "19_alexnet_upload", failures)


def drawn_now(page: Page) -> bool:
    """Whether the page shows a prediction for a drawing."""
    return page.get_by_role("heading", name="Current image: your drawing").count() > 0


def stroke_from_corner(page: Page) -> None:
    """A stroke that starts 6 px inside the canvas's top-right corner, the pointer arriving there from outside and
    pressing at once (as a pen or a finger does): the strip where the canvas's toolbar used to lie, unseen."""
    box = page.locator("canvas.upper-canvas").first.bounding_box()
    page.mouse.move(5, 5)
    x, y = box["x"] + box["width"] - 12, box["y"] + 6
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 25):
        page.mouse.move(x - 5 * i, y + 9 * i)
    page.mouse.up()


def canvas_tool(page: Page, name: str) -> None:
    """Click one of the canvas toolbar's buttons ('Undo', 'Reset canvas & history')."""
    page.locator(".dc-root").first.hover()
    page.wait_for_timeout(400)
    page.get_by_role("button", name=name, exact=True).click()
    page.wait_for_timeout(1000)
    settle(page)


def canvas_checks(page: Page, shots: Path, failures: list[str]) -> None:
    """At 1,024 and 1,440 px: the canvas whole and clear of the Upload column and of its own toolbar; a stroke from its
    top-right corner draws; undo and the canvas's trash icon take the drawing's prediction away. Ends with a 7 drawn."""
    for width in (1024, 1440):
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        canvas = page.locator("canvas.upper-canvas").first.bounding_box()
        upload = page.locator('[data-testid="stFileUploader"]').first.bounding_box()
        toolbar = page.locator(".dc-toolbar").first.bounding_box()
        beside = upload["x"] >= canvas["x"] + canvas["width"] or upload["y"] >= canvas["y"] + canvas["height"]
        expect(failures, f"canvas at {width} px", canvas["width"] == 280 and canvas["x"] + 280 <= width and beside,
               f"cut off or covered: canvas {canvas}, uploader {upload}")
        expect(failures, f"canvas toolbar at {width} px", toolbar["y"] + toolbar["height"] <= canvas["y"] + 0.5,
               f"lies over the drawing area: toolbar {toolbar}, canvas {canvas}")
        shoot(page, shots, f"02a_draw_inputs_{width}px", failures)
        canvas_tool(page, "Reset canvas & history")
        stroke_from_corner(page)
        page.wait_for_timeout(1000)
        settle(page)
        expect(failures, f"a stroke from the canvas's top-right corner at {width} px", drawn_now(page), "drew nothing")
    shoot(page, shots, "02b_draw_corner_stroke", failures)
    page.set_viewport_size({"width": 1400, "height": 1000})
    canvas_tool(page, "Undo")
    expect(failures, "undo of the only stroke", not drawn_now(page), "left the drawing's prediction on the page")
    shoot(page, shots, "02c_draw_undone", failures)
    draw_seven(page)
    page.get_by_role("heading", name="Current image: your drawing").wait_for(timeout=30_000)
    canvas_tool(page, "Reset canvas & history")
    expect(failures, "the canvas's trash icon", not drawn_now(page), "left the drawing's prediction on the page")
    draw_seven(page)
    page.get_by_role("heading", name="Current image: your drawing").wait_for(timeout=30_000)
    settle(page)


def refused_upload_check(page: Page, failures: list[str]) -> None:
    """After a file over the size limit: its name and the reason in words on the page; then a held-out digit picked and
    another such file: no prediction left under the warning."""
    main = page.locator('[data-testid="stMain"]')
    for attempt in ("huge.png", "huge2.png"):
        if attempt == "huge2.png":
            page.get_by_role("button", name="Random held-out digit").click()
            page.get_by_role("heading", name="Current image: held-out digit").wait_for(timeout=30_000)
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                files=[{"name": attempt, "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20)}])
        try:
            main.get_by_text(f"'{attempt}' was not uploaded", exact=False).wait_for(timeout=20_000)
        except PlaywrightTimeout:
            failures.append(f"a refused 3 MB upload ({attempt}) got no warning naming it and the limit")
            return
        settle(page)
        expect(failures, f"refused upload {attempt}", "2.0MB or smaller" in main.inner_text(),
               "the warning does not name the limit")
        expect(failures, f"refused upload {attempt}", page.get_by_role("heading", name="Current image").count() == 0,
               "a prediction stayed on the page under the warning")

def main() -> int:
    global PORT, URL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--shots", default="/tmp/shots", type=Path, help="folder for the screenshots")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    PORT, URL = args.port, f"http://localhost:{args.port}"
    failures: list[str] = []
    runs_dir = Path(tempfile.mkdtemp(prefix="browser_check_runs_"))
    app = start_app(runs_dir)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(URL, wait_until="domcontentloaded")
                settle(page, heading=FIRST_PAGE)
                pages = sidebar_pages(page)
                print("pages:", ", ".join(pages))
                if pages[:1] != [FIRST_PAGE] or len(pages) < 5 or not set(CHECKS) <= set(pages):
                    failures.append(f"unexpected sidebar pages {pages}")
                print("Draw & predict, default held-out digit")
                shoot(page, args.shots, "01_draw_default", failures)

                print("Draw & predict, drawing a 7")
                draw_seven(page)
                page.get_by_role("heading", name="Current image: your drawing").wait_for(timeout=30_000)
                settle(page)
                shoot(page, args.shots, "02_draw_drawn", failures)
                print("Draw & predict: the canvas at 1,024 and 1,440 px, a stroke from its corner, undo, trash")
                canvas_checks(page, args.shots, failures)

                for title in pages[1:]:
                    print(title)
                    go_to(page, title)
                    if title in CHECKS:
                        CHECKS[title](page, f"{title} (lenet5)", failures)
                    shoot(page, args.shots, f"03_{slug(title)}_lenet5", failures)

                print("switching the model to lenet5-modern")
                page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
                page.get_by_role("option", name="lenet5-modern", exact=False).click()
                settle(page)
                for title in pages[1:]:
                    print(title)
                    go_to(page, title)
                    if title in CHECKS:
                        CHECKS[title](page, f"{title} (lenet5-modern)", failures)
                    shoot(page, args.shots, f"07_{slug(title)}_modern", failures)
                    if title in CHECKS:
                        interact(page, title, args.shots, failures)

                print("Draw & predict, uploading a dark-on-light picture")
                go_to(page, FIRST_PAGE)
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(dark_on_light_png()))
                page.get_by_role("heading", name="Current image: your upload").wait_for(timeout=30_000)
                settle(page)
                shoot(page, args.shots, "11_draw_upload_modern", failures)

                print("Draw & predict, Clear")
                page.get_by_role("button", name="Clear").click()
                settle(page)
                shoot(page, args.shots, "12_draw_cleared", failures)

                print("Draw & predict, uploading a file that is not an image, then one over the size cap")
                uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
                uploader.set_input_files(files=[{"name": "not_a_digit.png", "mimeType": "image/png",
                                                 "buffer": b"this is not a picture"}])
                settle(page)
                if page.get_by_text("could not read").count() == 0:
                    failures.append("a corrupt upload did not show the 'could not read ... as an image' warning")
                shoot(page, args.shots, "13_draw_corrupt_upload", failures)
                page.get_by_role("button", name="Clear").click()
                settle(page)
                uploader.set_input_files(files=[{"name": "huge.png", "mimeType": "image/png",
                                                 "buffer": b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024)}])
                settle(page)
                if page.get_by_role("heading", name="Current image: your upload").count():
                    failures.append("a 3 MB upload got through the 2 MB cap")
                refused_upload_check(page, failures)
                shoot(page, args.shots, "14_draw_oversize_upload", failures)

                print("Feature maps, hovering over C1")
                go_to(page, "Feature maps")
                charts = page.locator('[data-testid="stPlotlyChart"]')
                c1 = charts.nth(1).locator(".nsewdrag").first  # charts: input, C1, ...; .nsewdrag is the plot area
                c1.scroll_into_view_if_needed()
                area = c1.bounding_box()
                page.mouse.move(area["x"] + area["width"] * 0.09, area["y"] + area["height"] * 0.5)
                page.wait_for_timeout(1500)
                hover = page.locator(".hoverlayer .hovertext")
                print("  hover label:", " ".join(hover.first.text_content().split()) if hover.count() else None)
                if hover.count() == 0:
                    failures.append("no hover label over the C1 feature maps")
                page.screenshot(path=str(args.shots / "15_feature_maps_hover.png"))

                print("Misclassified, clicking a confusion-matrix cell, then Use")
                click_confusion_cell(page, args.shots, failures)

                print("AlexNet, picking a test image of the shipped CIFAR-10 sample, then uploading a colour picture")
                alexnet_page(page, args.shots, failures)
            except Exception:
                page.screenshot(path=str(args.shots / "failed_here.png"), full_page=True)
                print("page text where it failed:", page.locator("body").inner_text()[:1500])
                raise
            finally:
                browser.close()
    finally:
        stop_app(app)
        stop_worker(runs_dir)
    for failure in failures:
        print("FAIL", failure)
    print("browser check:", "FAILED" if failures else "passed", f"(screenshots in {args.shots})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
