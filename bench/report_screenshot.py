"""Render a seqtune report in headless Chromium and save a PNG screenshot of it.

Usage: python bench/report_screenshot.py REPORT.html|DIR [--out shot.png] [--width 1280] [--height 3000]

Given a folder, the report is (re)built first with `seqtune report`. Chromium runs
with networking off, which doubles as a check that the HTML is self-contained:
an image that needed the network would come out blank. Without Chromium the
script prints why and exits 0, so it can sit in a benchmark list on any machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, out: Path, width: int, height: int, chromium: str) -> None:
    with tempfile.TemporaryDirectory(prefix="seqtune-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out.resolve()}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="report.html, or a sweep/run folder to build the report for")
    ap.add_argument("--out", help="screenshot path (default: beside the HTML, report.png)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args(argv)

    target = Path(args.target)
    if target.is_dir():
        from seqtune.experiments.report import build_report

        target, _ = build_report(target)
    if not target.is_file():
        print(f"error: {target}: no such file", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print(f"SKIP: no Chromium found (looked for {', '.join(CANDIDATES)}); "
              "install it with `apt-get install -y chromium`")
        return 0
    out = Path(args.out) if args.out else target.with_suffix(".png")
    screenshot(target, out, args.width, args.height, chromium)
    print(f"{out} ({out.stat().st_size} bytes) from {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
