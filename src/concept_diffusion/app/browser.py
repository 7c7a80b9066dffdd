"""Drive the editor in Debian's chromium with playwright: the README screenshot and the browser tests.

Playwright's own browser downloads are not used (`playwright install` needs a network): playwright
starts the system's `/usr/bin/chromium` (`apt-get install chromium`), headless, with background
networking off. Requests to any host but the app's are refused and recorded, so a page that
tries to reach a CDN or an analytics server is caught.
"""

import contextlib
import os
import shutil
from typing import Iterator, List
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
# No background traffic (updates, sync, safe browsing, metrics): the page's requests are all there is.
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]


def chromium_path() -> str:
    """The system chromium, or a ValueError that says how to install it."""
    path = shutil.which(CHROMIUM) or shutil.which("chromium")
    if path is None:
        raise ValueError("no chromium found: install Debian's with `apt-get install chromium` (playwright's download is not used)")
    return path


@contextlib.contextmanager
def open_page(url: str, width: int = 1280, height: int = 1000) -> Iterator[tuple]:
    """Yield (page, refused): a chromium page at `url` and the list of URLs on other hosts it tried to load."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # chromium's sandbox refuses to run as root
    allowed = urlparse(url).netloc
    refused: List[str] = []

    def only_the_app(route):
        if urlparse(route.request.url).netloc == allowed or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", only_the_app)
            page.goto(url)
            yield page, refused
        finally:
            browser.close()


def wait_for_editor(page, timeout_ms: int = 120_000) -> None:
    """Wait until the app has left Gradio's "Loading" screen and shows the first concept slider."""
    page.wait_for_selector("#concept-0 input[type=range]", state="visible", timeout=timeout_ms)


def screenshot_editor(page, image_path: str, png_path: str, timeout_ms: int = 120_000) -> None:
    """On an open editor page: upload `image_path` on the Edit tab, wait for the decoded image, save a PNG of the page."""
    from concept_diffusion.atomic import atomic_path

    wait_for_editor(page, timeout_ms)
    page.get_by_role("tab", name="Edit").click()
    page.set_input_files("#edit-input input[type=file]", image_path)
    page.wait_for_selector("#edit-output img", state="visible", timeout=timeout_ms)
    page.wait_for_timeout(1000)  # let the sliders take their values
    with atomic_path(png_path, ".png") as temporary:
        page.screenshot(path=temporary, full_page=True)
