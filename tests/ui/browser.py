"""Headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium, from async
tests: every WebDriver call runs in a thread so the gateway in the same event loop keeps
serving. Nothing is downloaded: the browser and its driver are the system's.

Screenshots go to $DERGW_TEST_ARTIFACTS/ui/ (default: test-artifacts/ui/ in the checkout,
which git ignores and CI keeps in its working folder).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.required import missing

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,1600")
ARTIFACTS = Path(os.environ.get("DERGW_TEST_ARTIFACTS", Path(__file__).parents[2] /
                                "test-artifacts")) / "ui"


def require_chromium() -> None:
    absent = [p for p in (CHROMIUM, DRIVER) if shutil.which(p) is None]
    if absent:
        missing(f"needs Debian's chromium and chromium-driver ({', '.join(absent)})")


def spki_sha256(cert_pem: Path) -> str:
    """Base64 SHA-256 of a certificate's public key: Chromium trusts exactly that key
    (--ignore-certificate-errors-spki-list), not every certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browser:
    def __init__(self, base_url: str, server_cert: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--ignore-certificate-errors-spki-list={spki_sha256(server_cert)}")
        self.driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
        self.base = base_url
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self.call(self.driver.get, self.base + path)

    async def read(self, fn: Any) -> Any:
        """Read from a live page: an element the page replaced between finding and reading
        it is found again (the pages update in place from the event stream)."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

        for attempt in range(5):
            try:
                return await self.call(fn)
            except StaleElementReferenceException:
                pass
            except WebDriverException as exc:
                if "does not belong to the document" not in str(exc) or attempt == 4:
                    raise
            await asyncio.sleep(0.1)
        return await self.call(fn)

    async def text(self, css: str = "body") -> str:
        from selenium.webdriver.common.by import By

        return await self.read(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text)

    async def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By

        return await self.call(lambda: len(self.driver.find_elements(By.CSS_SELECTOR, css)))

    async def attribute(self, css: str, name: str) -> str | None:
        from selenium.webdriver.common.by import By

        return await self.read(
            lambda: self.driver.find_element(By.CSS_SELECTOR, css).get_attribute(name))

    async def fill_and_submit(self, css_input: str, value: str, css_button: str) -> None:
        from selenium.webdriver.common.by import By

        def go() -> None:
            self.driver.find_element(By.CSS_SELECTOR, css_input).send_keys(value)
            self._click_and_wait(css_button)

        await self.call(go)

    async def click(self, css: str) -> None:
        """Click something that loads a new page, and wait for it."""
        await self.call(self._click_and_wait, css)

    def _click_and_wait(self, css: str) -> None:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.CSS_SELECTOR, css).click()

        def gone(_driver: Any) -> bool:
            # The old page is gone once its root is stale. ChromeDriver sometimes says so as
            # an inspector error ("Node with given id does not belong to the document")
            # rather than a stale-element error, if asked while the page is swapped.
            try:
                return bool(expected_conditions.staleness_of(old)(_driver))
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc):
                    return True
                raise

        WebDriverWait(self.driver, 15).until(gone)

    async def script(self, source: str) -> Any:
        return await self.call(self.driver.execute_script, source)

    async def wait_for(self, probe: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                await self.screenshot("timeout")
                raise TimeoutError("the page did not get there in time")
            await asyncio.sleep(0.2)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base)

    def cookies(self) -> list[dict[str, Any]]:
        return self.driver.get_cookies()

    async def screenshot(self, name: str) -> Path:
        target = ARTIFACTS / f"{name}.png"
        await self.call(self.driver.save_screenshot, str(target))
        return target

    def quit(self) -> None:
        self.driver.quit()
