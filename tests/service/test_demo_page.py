"""The demo page at `/` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by selenium) against uvicorn serving the shipped default model.

The page must say what the API says: the same top label as `POST /predict` for the same file, one
timeline segment per clip pair, the error envelope's message for a file that is not a video, and, with
an API key configured, a password field whose key then makes both calls work. The browser's console
must stay free of errors except the network lines of the statuses a test provokes on purpose.

Skipped only where chromium or chromedriver is not installed (`.ci/run` installs both). With
`FSTCN_DEMO_SCREENSHOT=docs/img/demo.png` the prediction test saves the page as the docs' screenshot;
`FSTCN_DEMO_VIDEO=PATH` uploads that video instead of a generated one (the docs' screenshot uses a
Synthetic Actions `wave` video).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from fstcn.models import default_model_path
from fstcn.service.app import create_app
from fstcn.service.settings import Settings
from tests.service.servers import live_app
from tests.videos import write_video

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
    pytest.mark.slow,
]

API_KEY = "demo-page-key"
WAIT_S = 30.0  # a prediction of the shipped model on a loaded 2-core CI machine takes about a second


def serve_default_model(**settings: Any) -> Iterator[str]:
    """uvicorn serving the shipped model on a free port, settings independent of the caller's FSTCN_*."""
    with pytest.MonkeyPatch.context() as env:
        for key in [key for key in os.environ if key.startswith("FSTCN_")]:
            env.delenv(key)
        app = create_app(Settings(model_path=default_model_path(), providers="cpu", **settings))
    with live_app(app) as url:
        yield url


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve_default_model()


@pytest.fixture(scope="module")
def key_server() -> Iterator[str]:
    yield from serve_default_model(api_key=API_KEY)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="fstcn-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",  # the CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then never looks for (or downloads) a driver itself.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("FSTCN_DEMO_VIDEO")
    if chosen:
        return Path(chosen).resolve()
    return write_video(tmp_path_factory.mktemp("demo") / "square.mp4", seconds=3.0, width=240, height=180)


def api_predict(url: str, path: Path, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{url}/predict", files={"file": (path.name, path.read_bytes())}, headers=headers, timeout=60
    )


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get_log("browser")  # drop what earlier tests left
    driver.get(url)


def wait_for(driver: webdriver.Chrome, element_id: str) -> WebElement:
    """The element once it is shown with some text."""
    element = driver.find_element(By.ID, element_id)
    WebDriverWait(driver, WAIT_S).until(lambda _: element.is_displayed() and element.text.strip())
    return element


def wait_model_named(driver: webdriver.Chrome, name: str) -> str:
    model = driver.find_element(By.ID, "model")
    WebDriverWait(driver, WAIT_S).until(lambda _: name in model.text)
    return model.text


def upload(driver: webdriver.Chrome, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def console_errors(driver: webdriver.Chrome, allowed_statuses: tuple[int, ...] = ()) -> list[str]:
    """The console's SEVERE lines, less the network lines of the statuses a test provoked."""
    allowed = tuple(f"status of {status} " for status in allowed_statuses)
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(text in entry["message"] for text in allowed)
    ]


def save_full_page(driver: webdriver.Chrome, path: Path) -> None:
    """A PNG of the whole page at the window's width (the docs' screenshot)."""
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    width, height = driver.execute_script(
        "const root = document.documentElement; return [root.clientWidth, root.scrollHeight]"
    )
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def timeline_segments(driver: webdriver.Chrome) -> list[WebElement]:
    timeline = driver.find_element(By.CSS_SELECTOR, "[data-testid=timeline]")
    return timeline.find_elements(By.CSS_SELECTOR, "[data-testid=timeline-segment]")


def test_the_page_shows_what_the_api_answers_and_the_timeline_seeks(
    server: str, browser: webdriver.Chrome, video: Path
) -> None:
    expected = api_predict(server, video).json()
    model = httpx.get(f"{server}/v1/model").json()

    open_page(browser, server)
    model_text = wait_model_named(browser, model["name"])
    assert model["version"] in model_text and model["preset"] in model_text
    upload(browser, video)
    top = browser.find_element(By.CSS_SELECTOR, "[data-testid=top-label]")
    WebDriverWait(browser, WAIT_S).until(lambda _: top.is_displayed() and top.text)

    assert top.text == expected["predictions"][0]["label"]
    ranked = browser.find_elements(By.CSS_SELECTOR, "#predictions li .label")
    assert [item.text for item in ranked][:5] == [p["label"] for p in expected["predictions"]]
    segments = timeline_segments(browser)
    assert len(segments) == len(expected["clips"]) == model["sampling"]["num_clips"]
    for segment, clip in zip(segments, expected["clips"], strict=True):
        # labelled in text, not only by colour
        assert clip["label"] in segment.text and f"{clip['start_s']:.2f}" in segment.text
    assert "ms" in browser.find_element(By.CSS_SELECTOR, "[data-testid=timing]").text
    assert browser.find_element(By.ID, "status").get_attribute("aria-live") == "polite"

    # Enter on a segment (keyboard only) plays the video from that clip pair's start
    last = expected["clips"][-1]
    browser.execute_script("document.getElementById('video').pause()")
    segments[-1].send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(
        lambda driver: (
            last["start_s"] - 0.05
            <= driver.execute_script("return document.getElementById('video').currentTime")
            <= last["end_s"] + 1.0
        )
    )
    played = browser.execute_script("const v = document.getElementById('video'); return [v.error, v.paused]")
    assert played == [None, False], "the browser could not play the uploaded video"

    screenshot = os.environ.get("FSTCN_DEMO_SCREENSHOT")
    if screenshot:
        save_full_page(browser, Path(screenshot))
    assert console_errors(browser) == []


def test_a_file_that_is_not_a_video_shows_the_error_message(
    server: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video, only words\n" * 20)
    refused = api_predict(server, notes)
    assert refused.status_code == 415
    message = refused.json()["error"]["message"]
    assert message.startswith("not a video")

    open_page(browser, server)
    upload(browser, notes)
    error = wait_for(browser, "error")
    assert error.get_attribute("data-testid") == "error"
    assert error.text == message
    assert not browser.find_element(By.ID, "result").is_displayed()

    # the same words dropped on the drop zone (a drop event carrying a File, as a desktop drag makes)
    browser.execute_script(
        """const [zone, text] = arguments;
        const dropped = new DataTransfer();
        dropped.items.add(new File([text], "dropped.txt", {type: "text/plain"}));
        const drop = {dataTransfer: dropped, bubbles: true, cancelable: true};
        zone.dispatchEvent(new DragEvent("drop", drop));""",
        browser.find_element(By.ID, "drop-zone"),
        notes.read_text(),
    )
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, WAIT_S).until(lambda _: status.text == "Failed: dropped.txt")
    assert error.text == message
    assert console_errors(browser, allowed_statuses=(415,)) == []


def test_with_an_api_key_the_page_asks_for_it_then_works(
    key_server: str, browser: webdriver.Chrome, video: Path
) -> None:
    assert api_predict(key_server, video).status_code == 401
    expected = api_predict(key_server, video, key=API_KEY).json()

    open_page(browser, key_server)
    key_input = browser.find_element(By.ID, "api-key")
    WebDriverWait(browser, WAIT_S).until(lambda _: key_input.is_displayed())
    assert key_input.get_attribute("type") == "password"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=api-key]").text == "API key"
    assert "missing or invalid API key" in browser.find_element(By.ID, "key-reason").text

    key_input.send_keys("not-the-key", Keys.ENTER)  # a wrong key: asked again
    reason = browser.find_element(By.ID, "key-reason")
    WebDriverWait(browser, WAIT_S).until(lambda _: "missing or invalid API key" in reason.text)
    assert key_input.is_displayed()

    key_input.clear()
    key_input.send_keys(API_KEY, Keys.ENTER)
    wait_model_named(browser, expected["model"]["name"])
    assert not key_input.is_displayed()
    upload(browser, video)
    top = browser.find_element(By.CSS_SELECTOR, "[data-testid=top-label]")
    WebDriverWait(browser, WAIT_S).until(lambda _: top.is_displayed() and top.text)
    assert top.text == expected["predictions"][0]["label"]
    assert len(timeline_segments(browser)) == len(expected["clips"])
    assert "Authorization: Bearer" in browser.find_element(By.ID, "curl").get_attribute("textContent")
    assert console_errors(browser, allowed_statuses=(401,)) == []
