"""The attention explorer in a real browser: headless Chromium (Debian's package, driven by
Playwright) loads the served page, translates a sentence, draws the heat-map and shows a
weight on hover; the page `seq2seq attention -o page.html` writes works without a server.

Screenshots go to a temporary folder, or to $EXPLORER_SCREENSHOTS; $EXPLORER_CHECKPOINT
serves another model (e.g. the toy model of `make demo`) to look at a real one.
"""

import os
import re
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: apt-get install "
                                                         "chromium (.ci/run does)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) "
                                                             "is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")

from seq2seq.inspection.commands import attention  # noqa: E402
from seq2seq.serving.app import create_app  # noqa: E402
from seq2seq.serving.engine import Served  # noqa: E402

SENTENCE = os.environ.get("EXPLORER_SENTENCE", "the big dog sees two small cats .")


@contextmanager
def running(app):
    """The app served by uvicorn on a free loopback port, in a thread: its page's address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture(scope="module")
def checkpoint(request) -> Path:
    if os.environ.get("EXPLORER_CHECKPOINT"):
        return Path(os.environ["EXPLORER_CHECKPOINT"])
    return request.getfixturevalue("served_tiny")[0]


def open_browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1240, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return browser, page, errors


def hover_shows_a_weight(page) -> str:
    """Hover the largest weight of a middle row of the (first) heat-map; the tooltip's
    text, which must hold that weight."""
    rows = page.locator("#maps figure").first.locator(".rlab").count()
    row = page.locator(f"#maps figure >> nth=0 >> .cell[data-r='{rows // 2}']")
    weights = [float(w) for w in row.evaluate_all("cells => cells.map(c => c.dataset.w)")]
    row.nth(weights.index(max(weights))).hover()
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    shown = re.search(r"\b([01]\.\d{3})\b", text)
    assert shown and abs(float(shown.group(1)) - max(weights)) < 0.0011, text
    assert "\u2192" in text, text  # which row attends to which column
    maps = page.locator("#maps figure").count()  # each map lights the same row and column
    assert page.locator("#maps .lab.on").count() == 2 * maps
    return text


def test_the_explorer_translates_a_sentence_and_shows_its_attention(checkpoint, tmp_path):
    shots = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    served = Served.load(checkpoint, device="cpu")
    expected = served.translator.translate(SENTENCE)  # the page starts at the model's beam
    with running(create_app(served)) as url, sync_api.sync_playwright() as playwright:
        browser, page, errors = open_browser(playwright)
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent.length > 0")
        page.fill("#sentence", SENTENCE)
        page.press("#sentence", "Enter")
        page.wait_for_selector("#maps .cell")
        assert page.text_content("#translation") == expected
        assert "Cross-attention: each row" in page.text_content("#explain")
        hover_shows_a_weight(page)
        page.screenshot(path=str(shots / "explorer.png"), full_page=True)

        page.select_option("#head", "all")
        page.check("#shared")
        assert page.locator("#maps figure").count() == served.info["model"]["n_heads"]
        page.click("#tabs button[data-kind=encoder]")
        page.select_option("#units", "words")
        hover_shows_a_weight(page)
        page.screenshot(path=str(shots / "explorer-heads.png"), full_page=True)

        page.click("#greedy")
        page.click("#go")
        page.wait_for_function(
            "document.getElementById('decoding').textContent.startsWith('greedy')")
        assert page.text_content("#translation") == served.translator.translate(
            SENTENCE, beam_size=1)

        static = tmp_path / "page.html"  # the same page, for one sentence, without a server
        attention(checkpoint, SENTENCE, static, beam_size=1)
        page.goto(static.as_uri())
        page.wait_for_selector("#maps .cell")
        assert page.text_content("#translation") == served.translator.translate(
            SENTENCE, beam_size=1)
        hover_shows_a_weight(page)
        page.screenshot(path=str(shots / "explorer-static.png"), full_page=True)
        browser.close()
    assert errors == []
