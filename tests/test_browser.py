"""A real browser drives the dashboard: tests/browser_check.py in headless Chromium.

Needs Debian's chromium (``apt-get install chromium``; .ci/run installs it) and the Python
``playwright`` package (in the ``test`` extra). Without either the test is skipped and says why.
No browser download, no network: the app is served on localhost.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CONVNET_LAB_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not Path(CHROMIUM).is_file() and shutil.which("chromium") is None,
                    reason=f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) "
                           "or set CONVNET_LAB_CHROMIUM")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                    reason="playwright not installed: pip install -e '.[test]'")
def test_dashboard_in_a_real_browser(tmp_path):
    chromium = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    shots = tmp_path / "shots"
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "browser_check.py"), "--chromium", chromium,
                           "--shots", str(shots), "--port", "8598"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "browser check: passed" in done.stdout, report
    pictures = sorted(p.name for p in shots.glob("*.png"))
    assert len(pictures) >= 15, pictures  # a screenshot per page and step
    assert any(p.startswith("02_draw_drawn") for p in pictures), pictures
    for step in ("08_why_this_answer_other_class", "08_adversarial_digits_pgd", "08_paper_experiments_other_file"):
        assert f"{step}.png" in pictures, pictures
