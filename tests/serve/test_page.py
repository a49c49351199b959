"""The playground in headless Chromium: move a slider, submit, an answer appears."""
import shutil

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_slider_submit_answer(running, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(running.url + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("soup")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".weight[data-objective='helpful']")))
    slider = browser.find_element(By.CSS_SELECTOR, ".weight[data-objective='helpful']")
    slider.click()
    for _ in range(6):
        slider.send_keys(Keys.ARROW_RIGHT)  # 0.5 -> 0.8 in steps of 0.05
    assert browser.find_element(By.CSS_SELECTOR, ".weight[data-objective='helpful'] + .value").text == "0.8"
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("how do i fix my bike ?")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.ID, "usage").text != "")
    answer = browser.find_element(By.ID, "answer").text
    assert answer and answer != "…" and not browser.find_element(By.ID, "error").text
    assert '"helpful":0.8' in browser.find_element(By.ID, "usage").text
    browser.save_screenshot(str(tmp_path / "playground.png"))
