"""The web app in a real browser: Debian's headless Chromium driven by Selenium through the system chromedriver.

Opens the app (with the server's token), types a prompt, adds a concept, moves its scale slider, gets the image,
downloads the PNG and checks its parameters (and that they regenerate the same pixels), then drops the PNG back
on the app to restore its settings. With SEGAKIT_SCREENSHOTS=DIR it saves both tabs there (docs/img via
``python scripts/serve_screenshots.py``). Without a browser it fails in CI (CI set) and skips elsewhere.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import running_server

from segakit.core.images import png_params
from segakit.jobs.generate import GenerationParams, render
from segakit.serve.config import Limits, ServeConfig

TOKEN = "browser-test-token"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser_paths() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


def need_browser():
    missing = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "the selenium package is not installed (pip install -e '.[test]')"
    if missing is None and browser_paths() is None:
        missing = "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver; make browser)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"The browser test cannot run in CI: {missing}.")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def server():
    need_browser()
    config = ServeConfig(token=TOKEN, limits=Limits(max_steps=30, max_concepts=4), preview_steps=4)
    with running_server(config) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_paths()
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1700",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tempfile.mkdtemp(prefix='segakit-chrome-')}",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout=60.0, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, f"timed out waiting for {what}")


def find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def finds(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def downloaded(folder: Path, timeout=30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob("*.png")]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no PNG was downloaded to {folder}")


def test_app_generates_with_a_concept_and_downloads_its_png(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    url, service = server
    browser.get(f"{url}/?token={TOKEN}")
    wait(browser, lambda d: finds(d, "#prompt textarea"), what="the app")
    find(browser, "#prompt textarea").send_keys("a face of a person")
    steps = find(browser, "#steps input[type=number]")
    steps.clear()
    steps.send_keys("12\t")
    find(browser, "#add-concept").click()
    wait(browser, lambda d: find(d, "#concept-0 textarea").is_displayed(), what="a concept row")
    find(browser, "#concept-0 textarea").send_keys("bald")
    slider = find(browser, "#scale-0 input[type=range]")
    before = float(slider.get_attribute("value"))
    ActionChains(browser).click_and_hold(slider).move_by_offset(int(slider.size["width"] * 0.3), 0).release().perform()
    moved = float(slider.get_attribute("value"))
    assert moved != before
    # the slider's release renders a preview and then the full image, whose PNG the download link serves
    link = wait(
        browser, lambda d: [a for a in finds(d, "#download a") if a.get_attribute("href")], what="the download link"
    )[0]
    wait(browser, lambda d: "Done" in find(d, "#status").text, what="the full render")
    link = [a for a in finds(browser, "#download a") if a.get_attribute("href")][0]
    link.click()
    png = downloaded(browser.downloads)
    params = png_params(png.read_bytes())
    assert params["prompt"] == "a face of a person" and params["steps"] == 12 and params["seed"] == 0
    assert [(e["prompt"], e["scale"], e["reverse"]) for e in params["edits"]] == [("bald", moved, False)]
    direct = render(GenerationParams.from_json(params), service.pipe).images[0]
    np.testing.assert_array_equal(np.asarray(Image.open(png).convert("RGB")), np.asarray(direct.convert("RGB")))
    assert "bald" in find(browser, "#parameters").text

    # dropping the PNG on the app restores its settings
    from selenium.webdriver.common.keys import Keys

    box = find(browser, "#prompt textarea")
    box.send_keys(Keys.CONTROL + "a")  # a modifier stays down until the end of a send_keys call
    box.send_keys(Keys.DELETE)
    box.send_keys("a different prompt")
    wait(
        browser,
        lambda d: find(d, "#prompt textarea").get_attribute("value") == "a different prompt",
        what="the typed prompt",
    )
    find(browser, "#restore input[type=file]").send_keys(str(png))
    wait(
        browser,
        lambda d: find(d, "#prompt textarea").get_attribute("value") == "a face of a person",
        what="the restored prompt",
    )
    assert float(find(browser, "#scale-0 input[type=range]").get_attribute("value")) == moved

    # the strength strip renders the concept at five scales up to the slider's
    find(browser, "#strip").click()
    strip = wait(
        browser, lambda d: [a for a in finds(d, "#strip-download a") if a.get_attribute("href")], what="the strip"
    )[0]
    assert strip.get_attribute("download").endswith(".png")

    shots = os.environ.get("SEGAKIT_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(Path(shots) / "serve-generate.png"))
    [b for b in finds(browser, "button[role=tab]") if b.text.strip() == "Edit"][0].click()
    wait(browser, lambda d: find(d, "#edit-help").is_displayed(), what="the Edit tab")
    assert "caption" in find(browser, "#edit-help").text
    assert find(browser, "#edit-mask").is_displayed() and find(browser, "#edit-guidance").is_displayed()
    assert find(browser, "#edit-blend").is_displayed()
    if shots:
        browser.save_screenshot(str(Path(shots) / "serve-edit.png"))
