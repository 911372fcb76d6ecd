"""The built wheel is the whole product: installed into a fresh virtual environment, with the source tree nowhere on
the path, it starts the app from another folder and every page renders.

The wheel is built offline (``pip wheel --no-build-isolation``, setuptools from the test extra). The fresh environment
sees the dependencies (torch, streamlit, ...) through a ``.pth`` line naming this environment's site-packages; a
``.pth`` line adds that one folder and runs none of its own ``.pth`` files, so this environment's editable install of
convnet-lab is not visible there: only the wheel's copy is.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the fresh environment, from a folder outside the source tree: where each package was imported from,
# then every page of the app through AppTest (the sidebar's model picker and the current image included).
PAGES_SCRIPT = r"""
import json, sys
from pathlib import Path
import convnets, dashboard, training
from training.cli import DASHBOARD
from streamlit.testing.v1 import AppTest

report = {"files": {m.__name__: str(Path(m.__file__ or next(iter(m.__path__))).resolve())
                    for m in (convnets, dashboard, training)}, "pages": {}}
app = AppTest.from_file(str(DASHBOARD), default_timeout=300)
app.run()
report["pages"]["app"] = [e.message for e in app.exception]
for page in sorted((DASHBOARD.parent / "views").glob("*.py")):
    app.switch_page(f"views/{page.name}")
    app.run()
    report["pages"][page.stem] = [e.message for e in app.exception] + [e.value for e in app.error]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel built from this tree; returns its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    # A copy of the source without build outputs: setuptools reuses a build/ folder and would ship stale files from it.
    source = shutil.copytree(ROOT, tmp / "source", ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "runs", ".git", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    if built.returncode and "No module named setuptools" in built.stderr + built.stdout:
        pytest.skip("setuptools is not installed (it comes with the test extra: pip install -e '.[test]')")
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("convnet_lab-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return python


@pytest.fixture
def elsewhere(tmp_path) -> dict:
    """Environment for the installed lab: every folder it writes in a temporary place, no worker, offline data only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CONVNET_LAB_RUNS=str(tmp_path / "runs"), CONVNET_LAB_DATA=str(tmp_path / "cache"),
               CONVNET_LAB_MNIST="sample", CONVNET_LAB_CIFAR="", CONVNET_LAB_NO_WORKER="1", OMP_NUM_THREADS="1")
    return env


def test_the_wheel_holds_the_whole_lab_and_every_page_renders_from_another_folder(installed, elsewhere, tmp_path):
    work = tmp_path / "work"  # the current folder: nothing may be written there
    work.mkdir()
    run = subprocess.run([str(installed), "-c", PAGES_SCRIPT], cwd=work, env=elsewhere, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    venv = installed.parent.parent.resolve()
    for name, file in report["files"].items():
        assert Path(file).is_relative_to(venv), f"{name} came from {file}, not the installed wheel"
    pages = report["pages"]
    assert {"draw", "alexnet", "train_runs", "experiments", "architecture"} <= set(pages), sorted(pages)
    assert all(not problems for problems in pages.values()), {p: v for p, v in pages.items() if v}
    assert not list(work.iterdir()), "the lab wrote into the current folder"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_the_installed_command_serves_the_app_from_the_root_folder(installed, elsewhere):
    """`convnet-lab app` of the wheel, started from /, answers Streamlit's health check on localhost."""
    port = _free_port()
    app = subprocess.Popen([str(installed.parent / "convnet-lab"), "app", "--port", str(port)], cwd="/", env=elsewhere,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline and app.poll() is None:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=5) as response:
                    answer = response.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert answer == "ok", f"no healthy server (exit code {app.poll()})"
    finally:
        app.terminate()
        try:
            out, _ = app.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            out, _ = app.communicate()
    assert "Traceback" not in out, out[-3000:]
