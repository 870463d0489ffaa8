"""A screenshot of the typing page in use (docs/serve-page.png), in headless Chromium.

    python benchmarks/serve_screenshot.py RUN --type "ROMEO: What light through yonder wi" \
        --out docs/serve-page.png

Starts `rnnlab serve RUN` on 127.0.0.1, types the text key by key, waits for the answer to
the last key, saves the page. Needs Debian's chromium and chromium-driver (as the browser test).
"""
from __future__ import annotations

import argparse
import sys
import time

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serve_load import free_port, start_server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--type", required=True, help="the text to type")
    ap.add_argument("--out", default="docs/serve-page.png")
    args = ap.parse_args()
    port = free_port()
    server = start_server(args.runs, port, [])
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=820,420"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts,
                              service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        driver.set_window_size(820, 520)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: " ms" in d.find_element(By.ID, "latency").text)
        box = driver.find_element(By.ID, "text")
        for ch in args.type:
            box.send_keys(ch)
            time.sleep(0.12)                                     # about 8 keys a second
        time.sleep(1.0)
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
        server.terminate()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
