"""The typing page in a real browser: headless Chromium (Debian's chromium and
chromium-driver packages, driven by Selenium; nothing is downloaded) against `rnnlab serve`
running on 127.0.0.1. Types a sentence key by key, sees the suggestions change, accepts
the first with Tab and checks the text box. RNNLAB_SCREENSHOT=path.png saves the page."""
import os
import shutil
import socket
import threading
import time

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from rnnlab.infer import Predictor
from rnnlab.serve import create_app, load_models

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(tiny_word_run):
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(load_models([tiny_word_run])), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver packages "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=900,600"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(DRIVER))
    yield driver
    driver.quit()


def _shown(browser):
    buttons = browser.find_elements(By.CSS_SELECTOR, "button.suggestion")
    assert len(buttons) == 3
    return [b.text for b in buttons if b.text]


def test_type_see_suggestions_change_and_accept_with_tab(browser, server, tiny_word_run):
    browser.get(server)
    wait = WebDriverWait(browser, 15)
    box = browser.find_element(By.ID, "text")
    wait.until(lambda b: "word-lstm" in b.find_element(By.ID, "latency").text)
    pred = Predictor.load(tiny_word_run)
    seen = []
    sentence = "Maria was born in France . She grew up speaking "
    for i, ch in enumerate(sentence):
        box.send_keys(ch)
        want = [w for w, _ in pred.suggest(sentence[:i + 1], 3)]
        wait.until(lambda b, want=want: _shown(b) == want,
                   f"suggestions for {sentence[:i + 1]!r} should be {want}")
        seen.append(tuple(want))
    assert len(set(seen)) >= 3                                      # they changed as we typed
    assert "ms" in browser.find_element(By.ID, "latency").text       # the last latency
    first = _shown(browser)[0]
    box.send_keys(Keys.TAB)
    wait.until(lambda b: box.get_attribute("value") == sentence + first + " ")
    after = [w for w, _ in pred.suggest(sentence + first + " ", 3)]
    wait.until(lambda b: _shown(b) == after)
    if os.environ.get("RNNLAB_SCREENSHOT"):
        browser.save_screenshot(os.environ["RNNLAB_SCREENSHOT"])


def test_click_inserts_the_chosen_word(browser, server, tiny_word_run):
    browser.get(server)
    wait = WebDriverWait(browser, 15)
    box = browser.find_element(By.ID, "text")
    wait.until(lambda b: "word-lstm" in b.find_element(By.ID, "latency").text)
    box.send_keys("The clouds in the sky are bl")
    want = [w for w, _ in Predictor.load(tiny_word_run).suggest("The clouds in the sky are bl", 3)]
    wait.until(lambda b: _shown(b) == want)
    buttons = browser.find_elements(By.CSS_SELECTOR, "button.suggestion")
    pick = next(b for b in buttons if b.text)
    word = pick.text
    pick.click()                          # a completion replaces the partial word
    expected = ("The clouds in the sky are " + word + " " if word.lower().startswith("bl")
                else "The clouds in the sky are bl " + word + " ")
    wait.until(lambda b: box.get_attribute("value") == expected)
