"""A real, headless Chromium for the Web Chat test, installed by the project's own files.

The browser is the one shipped inside the npm package @sparticuz/chromium (package.json): a
Brotli-compressed Chromium that the package unpacks on first use, so `npm ci` is all the set-up and
nothing is downloaded from a browser CDN. Playwright (requirements-dev.txt) drives it. The package
also carries the shared libraries Chromium needs (built for Amazon Linux 2023, glibc-compatible): they
are used only on a machine that lacks its own copies.
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
# The package unpacks its libraries only where it believes it runs on AWS Lambda (Node 20).
_UNPACK_LIBRARIES = {"AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x"}


def chromium_executable() -> Path:
    """The path of the unpacked Chromium binary (unpacking it the first time)."""
    if not (NODE_MODULES / "@sparticuz" / "chromium").is_dir():
        raise RuntimeError("@sparticuz/chromium is not installed: run `npm ci` in the project root (make does)")
    UNPACK_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", "--input-type=module", "-e", _UNPACK],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(UNPACK_DIR), **_UNPACK_LIBRARIES},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not unpack Chromium from @sparticuz/chromium: {done.stderr.strip()}")
    return Path(done.stdout.strip().splitlines()[-1])


def _library_path(executable: Path) -> dict[str, str]:
    """LD_LIBRARY_PATH for the package's libraries, only if the machine misses some Chromium needs."""
    linked = subprocess.run(["ldd", str(executable)], capture_output=True, text=True, check=False).stdout
    if "not found" not in linked:
        return {}
    bundled = UNPACK_DIR / "al2023" / "lib"
    return {"LD_LIBRARY_PATH": ":".join(filter(None, (str(bundled), os.environ.get("LD_LIBRARY_PATH"))))}


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable),
            args=list(CHROMIUM_ARGS),
            headless=True,
            env={**os.environ, **_library_path(executable)},
        )
        try:
            yield browser
        finally:
            browser.close()
