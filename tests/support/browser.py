"""A real, headless Chromium for the Web Chat test, installed by the project's own files.

The browser is the one shipped inside the npm package @sparticuz/chromium (package.json): a
Brotli-compressed Chromium that the package unpacks on first use, so `npm ci` is all the set-up and
nothing is downloaded from a browser CDN. Playwright (requirements-dev.txt) drives it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from localdev.processes import NODE_MODULES, PROJECT_ROOT

# Unpacked here (the package unpacks into the OS temporary folder, which TMPDIR names), once per machine.
UNPACK_DIR = PROJECT_ROOT / ".localdev" / "chromium"
# Headless in a container as root: no sandbox, no GPU; nothing reaches out to Google's services.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)
_UNPACK = "import chromium from '@sparticuz/chromium'; console.log(await chromium.executablePath());"


def chromium_executable() -> Path:
    """The path of the unpacked Chromium binary (unpacking it the first time)."""
    if not (NODE_MODULES / "@sparticuz" / "chromium").is_dir():
        raise RuntimeError("@sparticuz/chromium is not installed: run `npm ci` in the project root (make does)")
    UNPACK_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", "--input-type=module", "-e", _UNPACK],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(UNPACK_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not unpack Chromium from @sparticuz/chromium: {done.stderr.strip()}")
    return Path(done.stdout.strip().splitlines()[-1])


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_executable()), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
