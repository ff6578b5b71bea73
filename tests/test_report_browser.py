"""The report of a scoring run on the demo data, opened in a real browser (headless Chromium driven by
Selenium): the timeline agrees with the alarms JSON, clicking shows frames and alarms with their
nearest normal item, nothing is requested from outside the report's folder, and the console stays
clean. With VPC_DOCS=1 it saves the screenshot README shows (docs/report.png)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from extra.make_demo import make_demo
from tests.helpers import small_random_checkpoint

REPO = Path(__file__).resolve().parent.parent
D = 4
SCREENSHOT = REPO / "docs" / "report.png"


def command(script, *args):
    result = subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo data end to end, small: a model fitted on its training videos (a tiny CLIP with random
    weights), its test video scored with --report and its ground truth."""
    root = tmp_path_factory.mktemp("report")
    data = make_demo(root / "data", "avenue", seed=0, n_train=3, n_test=1, n_frames=40, width=160, height=96)
    weights = small_random_checkpoint(root / "small.pt")
    model = root / "demo.vpc"
    command("fit.py", data / "training" / "frames", "--out", model, "--detector", "motion", "--preset", "avenue",
            f"--consecutive={D}", f"--clip_weights={weights}", f"--work_dir={root / 'work'}")
    out = root / "scores"
    command("score.py", model, data / "testing" / "frames" / "01", "--out_dir", out, "--report",
            "--gt", data / "avenue.mat", "--gt_video", 1)
    return out / "01_report.html", json.loads((out / "01_alarms.json").read_text())


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the browser test needs Chromium and its driver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1500"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def image_shown(browser, element_id):
    """Whether the image element holds a decoded data: image."""
    return browser.execute_script(
        "const i = document.getElementById(arguments[0]);"
        "return i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/jpeg');", element_id)


def test_the_report_in_a_browser(demo_report, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page, alarms = demo_report
    browser.get(page.as_uri())
    # the timeline's alarm count and threshold are the JSON's
    bands = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.alarm-band")
    assert alarms["alarm_intervals"], "the demo run raised no alarm: nothing to check"
    assert len(bands) == len(alarms["alarm_intervals"])
    assert browser.find_element(By.ID, "alarm-count").text == str(len(alarms["alarm_intervals"]))
    line = browser.find_element(By.ID, "threshold-line")
    assert float(line.get_attribute("data-threshold")) == alarms["threshold"]
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline rect.gt-band")         # ground truth shaded
    # clicking outside the alarms shows a sampled frame
    timeline = browser.find_element(By.ID, "timeline")
    ActionChains(browser).move_to_element_with_offset(timeline, -timeline.size["width"] // 2 + 70, 0).click().perform()
    assert browser.find_element(By.ID, "viewer-title").text.startswith("Frame ")
    assert image_shown(browser, "frame-image") and not image_shown(browser, "memory-image")
    # clicking an alarm shows its frame, its responsible object boxed, and its nearest normal item's crop
    last = len(bands)          # the timeline is drawn again on each click: its elements found again
    band = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.alarm-band")[-1]
    ActionChains(browser).move_to_element(band).click().perform()
    interval = alarms["alarm_intervals"][-1]
    title = browser.find_element(By.ID, "viewer-title").text
    assert title.startswith(f"Alarm {last}: ")
    assert f"(frames {interval['start_frame']} to {interval['end_frame']})" in title
    assert image_shown(browser, "frame-image")
    assert browser.find_elements(By.CSS_SELECTOR, "#frame-box .box.responsible")
    assert image_shown(browser, "memory-image"), browser.find_element(By.ID, "memory-caption").text
    assert "Nearest normal memory item of the " in browser.find_element(By.ID, "memory-caption").text
    # streams can be shown and hidden
    browser.find_element(By.CSS_SELECTOR, "input[data-stream='temporal']").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline path[data-stream='temporal']")
    if os.environ.get("VPC_DOCS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    # nothing requested from outside the report's folder, and no console error
    requests = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(inside(url, page.parent) for url in urls), urls
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def inside(url, folder):
    """Whether loading ``url`` stays within ``folder``: inline data, a blank page, or a file in it."""
    parsed = urlparse(url)
    if parsed.scheme in ("data", "about"):
        return True
    return parsed.scheme == "file" and Path(unquote(parsed.path)).resolve().is_relative_to(folder.resolve())
