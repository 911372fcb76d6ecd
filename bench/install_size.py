"""Install size of a fresh virtual environment, before and after a change, side by side in one invocation.

A benchmark, not a test. For each git revision it exports the tree (``git archive``), creates a fresh virtual
environment, runs ``pip install`` of that tree (the user's install, no test extras), and measures ``site-packages``
with everything it holds, split into torch's share (torch, torchvision and the CUDA / Triton wheels that come with
them) and the rest: the product's own dependencies, which is what this project controls.

    .venv/bin/python bench/install_size.py 07a8058^ HEAD      # before / after dropping mlxtend

It needs a package index (or pip's cache) and about 7 GB of free disk per revision while it runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_SHARE = ("torch", "torchvision", "nvidia", "triton", "cuda", "functorch", "torchgen")


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(revision: str, work: Path) -> Path:
    """site-packages of a fresh venv holding ``pip install`` of ``revision``'s tree."""
    tree, venv = work / "tree", work / "venv"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(tree)], check=True)
    return next((venv / "lib").glob("python*/site-packages"))


def measure(site: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        sizes[name] = sizes.get(name, 0) + (directory_bytes(entry) if entry.is_dir() else entry.stat().st_size)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to install, e.g. 07a8058^ HEAD")
    args = parser.parse_args()
    results = {}
    for revision in args.revisions:
        with tempfile.TemporaryDirectory(prefix="install_size_") as work:
            sizes = measure(install(revision, Path(work)))
        torch_share = sum(v for k, v in sizes.items() if k.startswith(TORCH_SHARE))
        rest = {k: v for k, v in sizes.items() if not k.startswith(TORCH_SHARE)}
        results[revision] = (torch_share, rest)
        biggest = sorted(rest.items(), key=lambda kv: -kv[1])[:8]
        print(f"{revision}: torch's share {torch_share / 2**20:,.0f} MB; the rest {sum(rest.values()) / 2**20:,.0f} MB "
              f"(largest: {', '.join(f'{k} {v / 2**20:.0f}' for k, v in biggest)})", flush=True)
    if len(results) > 1:
        first, *others = results
        for other in others:
            before, after = sum(results[first][1].values()), sum(results[other][1].values())
            print(f"beyond torch: {first} {before / 2**20:,.0f} MB -> {other} {after / 2**20:,.0f} MB "
                  f"({(before - after) / 2**20:+,.0f} MB saved, {after / before:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
