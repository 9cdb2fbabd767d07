"""The page at `/`, driven in Debian's chromium by Playwright: three SMILES in, three names, drawings and
round-trip verdicts out, and the CSV download.

SEQTUNE_PAGE_MODEL=runs/demo/model serves a real model instead of the tiny one, and
SEQTUNE_PAGE_SCREENSHOT=docs/serve_page.png keeps the screenshot there (how docs/serve_page.png is made).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from live_server import serving
from tiny import make_model, make_tokenizer

CHROMIUM = "/usr/bin/chromium"
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]

if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the page test needs a browser",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("rdkit", reason="drawing molecules needs RDKit (the chem extra)")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from seqtune.inference.server import Limits, create_app
    from seqtune.modeling import ModelInfo, save_model
    from seqtune.prompts import get_format

    folder = os.environ.get("SEQTUNE_PAGE_MODEL")
    if not folder:
        tok = make_tokenizer("gpt2")
        folder = tmp_path_factory.mktemp("page") / "model"
        info = ModelInfo(get_format("plain"), "smiles2iupac", "", "tiny-gpt2", {"test_scores": {"exact_match": 0.0}})
        save_model(make_model("gpt2", len(tok)), tok, folder, info)
    app = create_app(folder, Limits(max_new_tokens=48 if os.environ.get("SEQTUNE_PAGE_MODEL") else 6))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/"


def test_page_names_draws_verifies_and_downloads(page_url, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            page.goto(page_url)
            page.wait_for_function("document.getElementById('task').textContent.length > 0")
            page.fill("#smiles", "\n".join(SMILES))
            page.select_option("#beams", "5")  # verified beams: the first candidate that round-trips
            page.click("#run")
            # The first round trip starts OPSIN's JVM in the server: allow it time.
            page.wait_for_selector("#status:has-text('named')", timeout=120_000)
            rows = page.locator("tr.result")
            assert rows.count() == 3
            assert page.locator("td.input").all_inner_texts() == SMILES
            assert page.locator("td.prediction").count() == 3
            page.wait_for_function("[...document.querySelectorAll('img.molecule')].length === 3 && "
                                   "[...document.querySelectorAll('img.molecule')].every(i => i.complete && "
                                   "i.naturalWidth > 0)", timeout=30_000)
            verdicts = page.locator("td.verdict .badge").all_inner_texts()
            assert len(verdicts) == 3 and set(verdicts) <= {"yes", "no"}
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "results.csv"
            download.value.save_as(str(saved))
        finally:
            browser.close()
    with open(saved, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert [r["input"] for r in table] == SMILES
    assert [r["round_trip"] for r in table] == verdicts
    assert all("prediction" in r for r in table)
    keep = os.environ.get("SEQTUNE_PAGE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
