"""Web Chat in a real, headless Chromium, as a person uses it: the page the local Direct Line serves,
Microsoft's Web Chat bundle, its token from the app's /api/directline/token (across origins, as in
production), the bot in the local Functions host. Buttons are clicked, not typed; a reload keeps the user.

Screenshots of each step land in .localdev/test-output/webchat/ (README.md shows the menu one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from localdev.emulators import Azurite, CosmosStandIn
from localdev.processes import PROJECT_ROOT
from localdev.stack import LocalStack
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node, pytest.mark.browser]

SCREENSHOTS = PROJECT_ROOT / ".localdev" / "test-output" / "webchat"
EXPIRE_AFTER_SECONDS = 8
# Generous: the machine is shared with the worker's CPU-bound operation and the whole stack.
STEP_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with running_bot(
        azurite,
        cosmos,
        ExpireAfterSeconds=str(EXPIRE_AFTER_SECONDS),
        SweepSchedule="*/1 * * * * *",
        ProgressIntervalSeconds="1",  # progress shows even where the operation is over in a few seconds
    ) as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 720, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def say(page: Page, text: str) -> None:
    box = page.get_by_role("textbox")
    box.fill(text)
    box.press("Enter")


def bot_says(page: Page, pattern: str) -> Locator:
    """The last bot bubble whose text matches `pattern` (a regular expression), once it is shown."""
    bubbles = page.locator(".webchat__bubble:not(.webchat__bubble--from-user)")
    bubble = bubbles.filter(has_text=re.compile(pattern)).last
    try:
        expect(bubble).to_be_visible(timeout=STEP_TIMEOUT_MS)
    except AssertionError as error:
        shown = "\n".join(repr(text) for text in bubbles.all_inner_texts())
        raise AssertionError(f"{error}\nbot bubbles shown ({screenshot(page, 'failed')}):\n{shown}") from None
    return bubble


def button(page: Page, title: str) -> Locator:
    """A suggested-action button, once Web Chat shows it."""
    found = page.locator(".webchat__suggested-actions").get_by_role("button", name=title, exact=True)
    expect(found).to_be_visible(timeout=STEP_TIMEOUT_MS)
    return found


def test_the_whole_flow_in_web_chat_with_buttons(bot: LocalStack, page: Page) -> None:
    errors: list[str] = []
    page.on("console", lambda message: _note_error(message, errors))
    page.on("pageerror", lambda error: errors.append(str(error)))
    failed_requests: list[str] = []
    page.on("requestfailed", lambda request: failed_requests.append(request.url))
    page.on("response", lambda response: response.status >= 400 and failed_requests.append(response.url))

    page.goto(bot.directline.url)
    bot_says(page, "^Hello and welcome!")
    bot_says(page, "^What.s your name\\?")  # Web Chat's Markdown curls the apostrophe

    # A greeting is greeted back, not taken for a name.
    say(page, "hi")
    bot_says(page, "^Hello to you too! What name shall I call you\\?")
    say(page, "Ada")
    bot_says(page, "^Nice to meet you, Ada!")
    bot_says(page, "^Which long operation shall I run, Ada\\?")
    for title in ("prime report", "sales report", "risk simulation", "route report"):
        button(page, title)
    # The bot takes no files: no upload button. It has a name and an avatar, not just "Bot".
    expect(page.get_by_role("button", name=re.compile("upload", re.IGNORECASE))).to_have_count(0)
    expect(page.locator(".webchat__initialsAvatar", has_text="LO").first).to_be_visible()
    screenshot(page, "1-menu-with-buttons")

    # Click an operation: acknowledged at once with a Cancel button, progress while it runs, then the result.
    button(page, "prime report").click()
    bot_says(page, "^Starting the prime report.")
    button(page, "Cancel")
    bot_says(page, "^Still working on the prime report: \\d+% done.")
    screenshot(page, "2-progress")
    result = bot_says(page, "^Thanks for waiting. Prime report for 1 to 500,000,000:")
    # The figures are a list in Web Chat (Markdown), one item per figure.
    expect(result.locator("li")).to_have_count(4)
    expect(result.locator("li").first).to_have_text(re.compile("^[\\d,]+ primes$"))
    bot_says(page, "^Which long operation shall I run, Ada\\?")
    screenshot(page, "3-result")

    # Start another and cancel it with its button.
    button(page, "sales report").click()
    bot_says(page, "^Starting the sales report.")
    button(page, "Cancel").click()
    bot_says(page, "^Cancelled the sales report.")
    bot_says(page, "^Which long operation shall I run, Ada\\? Tap one")  # short, after the first full menu
    screenshot(page, "4-cancelled")

    # Help lists the operations again; after a notification command the menu's buttons come back.
    say(page, "help")
    bot_says(page, "^I run long operations for you")
    say(page, "notify me about pizza")
    bot_says(page, "^OK: I.ll tell you here about")
    button(page, "prime report")

    # Left alone, the conversation is closed with a notice, which the page shows as it arrives.
    bot_says(page, f"closed after {EXPIRE_AFTER_SECONDS} s")
    screenshot(page, "5-expired")

    # A reload starts a new conversation as the same user: the page keeps its user id and proof (from
    # the app's /api/directline/token), so the bot greets them by name instead of asking it again.
    page.reload()
    bot_says(page, "^Welcome back, Ada!")
    bot_says(page, "^Which long operation shall I run, Ada\\?")
    screenshot(page, "6-reloaded")

    assert not errors, f"the page logged errors: {errors}"
    assert not failed_requests, f"requests failed: {failed_requests}"


def _note_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)
