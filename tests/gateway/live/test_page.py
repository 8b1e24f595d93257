"""The captioning page in a real headless Chromium: microphone -> MediaRecorder -> WebSocket -> captions.

Debian's `chromium` plays a WAV file as its fake microphone; the page records
it with MediaRecorder (WebM/Opus, 250 ms chunks) exactly as a person's browser
would, and the finals it shows must be the sentences in the file. Playwright
drives the installed browser (`executable_path`): no browser is downloaded.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soxr

from soriflow.gateway.live.service import LiveEdge
from soriflow.stt.evaluation import piper_clips
from tests.gateway.live.conftest import TOKEN, words_of
from tests.stt.speech import concat, silence

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPOKEN = (
    "Please send the quarterly report to the finance team before Friday.",
    "The train to the airport leaves every twenty minutes.",
)


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two piper sentences with pauses, as 48 kHz 16-bit mono (what Chromium's fake device plays)."""
    directory = tmp_path_factory.mktemp("page-speech")
    parts = [silence(1.0)]
    for clip in piper_clips(directory, SPOKEN):
        parts += [clip.audio.samples, silence(1.5)]
    audio = soxr.resample(concat(*parts, silence(2.0)), 16000, 48000)
    path = directory / "microphone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


async def test_page_shows_interims_and_the_spoken_sentences_as_finals(
    live: LiveEdge, microphone_wav: Path, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: apt-get install chromium (make test-setup does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            await page.goto(f"http://127.0.0.1:{live.port}/")
            await page.click("summary")  # "Access token", as a person opens it
            await page.fill("#token", TOKEN)
            await page.dispatch_event("#token", "change")
            # The picker lists the model's languages (/v1/models, behind the token): tiny.en has one.
            await page.wait_for_function("document.querySelector('#language').value === 'en'")
            # Record every interim the page shows, to check they came before the finals.
            await page.evaluate(
                """() => {
                  window.interims = [];
                  new MutationObserver(() => {
                    const text = document.querySelector('#interim').textContent.trim();
                    if (text) window.interims.push(text);
                  }).observe(document.querySelector('#interim'), {subtree: true, childList: true,
                                                                  characterData: true});
                }"""
            )
            await page.click("#mic")
            await page.wait_for_function(
                "document.querySelectorAll('#finals li.final').length >= 2", timeout=120_000
            )
            await page.click("#mic")  # stop: the last chunk, {"type": "end"}, then the server closes
            await page.wait_for_function(
                "document.querySelector('#status').textContent === 'Stopped.'", timeout=60_000
            )
            finals = await page.eval_on_selector_all(
                "#finals li.final",
                "items => items.map(li => ({text: li.querySelector('.text').textContent,"
                " time: li.querySelector('.time').textContent, start: +li.dataset.startMs}))",
            )
            interims = await page.evaluate("window.interims")
            await page.screenshot(path=str(tmp_path / "page.png"))
        finally:
            await browser.close()
    assert len(finals) == 2, (finals, console)
    wer = jiwer.wer(words_of(" ".join(SPOKEN)), words_of(" ".join(f["text"] for f in finals)))
    assert wer <= 0.1, finals
    assert interims, "no interim text was shown while speaking"
    assert all("–" in f["time"] and ":" in f["time"] for f in finals)
    assert finals[0]["start"] < finals[1]["start"]
