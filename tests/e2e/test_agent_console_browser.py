"""The local agent console against a web page of another origin, in a real headless Chromium: a page the
developer happens to open while `make run` is up must not read handed-off transcripts nor act as an agent.

The attacker's page is served from another port (another origin) and tries what a page can: fetch() with
and without CORS, with a guessed key header, and a plain HTML form post (text/plain: no CORS preflight).
The console's own page, opened with this run's key, works in the same browser (the control)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from localdev.directline.tests.handoff_bot import HandoffBot
from localdev.directline.tests.support import SECRET, Stack, running_stack

pytestmark = [pytest.mark.node, pytest.mark.browser]
STEP_TIMEOUT_MS = 30_000

# Each attempt reports {"name", "outcome"}: "read <status> <body>" if the page could read an answer,
# "opaque" if the request went out but the answer stayed hidden, "blocked: <error>" if it never could.
ATTACK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Totally unrelated page</title></head>
<body>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink" action="__ACCEPT__">
  <input name='{"agent": "Mallory", "x": "' value='"}'>
</form>
<script>
  const API = __API__;
  const ACCEPT = __ACCEPT_JSON__;
  async function attempt(name, url, options) {
    try {
      const response = await fetch(url, options);
      if (response.type === 'opaque') return { name, outcome: 'opaque' };
      return { name, outcome: 'read ' + response.status + ' ' + (await response.text()) };
    } catch (err) {
      return { name, outcome: 'blocked: ' + err.name };
    }
  }
  window.attack = async function () {
    const json = { 'Content-Type': 'application/json' };
    return [
      await attempt('list handoffs', API, {}),
      await attempt('list handoffs with credentials', API, { credentials: 'include' }),
      await attempt('list handoffs with a guessed key', API, { headers: { 'X-Console-Key': 'guess' } }),
      await attempt('read the console page', API.replace('/api/handoffs', ''), {}),
      await attempt('accept as JSON', ACCEPT, { method: 'POST', headers: json, body: '{"agent": "Mallory"}' }),
      await attempt('accept as text, no cors', ACCEPT,
                    { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
                      body: '{"agent": "Mallory"}' }),
      await attempt('list handoffs, no cors', API, { mode: 'no-cors' }),
    ];
  };
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(bot=HandoffBot()) as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def attacker_site(stack: Stack) -> Iterator[tuple[str, str]]:
    """(the attack page's URL on another origin, the conversation it targets)."""
    conversation_id = handed_off(stack, "browser-target")
    api = f"{stack.url}agent/api/handoffs"
    accept = f"{api}/{conversation_id}/accept"
    body = (
        ATTACK_PAGE.replace("__API__", json.dumps(api))
        .replace("__ACCEPT_JSON__", json.dumps(accept))
        .replace("__ACCEPT__", accept)
        .encode()
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", conversation_id
    finally:
        server.shutdown()
        server.server_close()


def handed_off(stack: Stack, user_id: str) -> str:
    bearer = {"Authorization": f"Bearer {SECRET}"}
    started = requests.post(f"{stack.domain}/conversations", json={"user": {"id": user_id}}, headers=bearer, timeout=10)
    conversation_id: str = started.json()["conversationId"]
    message = {"type": "message", "text": "agent", "from": {"id": user_id, "name": "Tess"}}
    sent = requests.post(
        f"{stack.domain}/conversations/{conversation_id}/activities", json=message, headers=bearer, timeout=10
    )
    assert sent.status_code == 200, sent.text
    return conversation_id


def console_state(stack: Stack, conversation_id: str) -> str:
    answer = requests.get(
        f"{stack.url}agent/api/handoffs/{conversation_id}",
        headers={"X-Console-Key": stack.server.console_key},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    state: str = answer.json()["state"]
    return state


def test_a_page_of_another_origin_can_neither_read_nor_drive_the_console(
    stack: Stack, page: Page, attacker_site: tuple[str, str]
) -> None:
    url, conversation_id = attacker_site
    page.goto(url)
    results = {result["name"]: result["outcome"] for result in page.evaluate("window.attack()")}

    # Nothing readable: CORS blocks every readable request (no Access-Control-Allow-Origin for this origin).
    for name in ("list handoffs", "list handoffs with credentials", "list handoffs with a guessed key",
                 "read the console page", "accept as JSON"):  # fmt: skip
        assert results[name].startswith("blocked"), (name, results[name])
    # What a page may send without a preflight goes out, but its answer stays hidden and it is refused.
    assert results["accept as text, no cors"] == "opaque" and results["list handoffs, no cors"] == "opaque"

    # The classic form post: text/plain, no preflight, a body that looks like JSON.
    with page.expect_response(lambda response: "/accept" in response.url) as posted:
        page.locator("#form").evaluate("form => form.submit()")
    assert posted.value.status == 403  # no console key (and text/plain would be 415 anyway)

    assert console_state(stack, conversation_id) == "waiting"
    bot = stack.bot
    assert isinstance(bot, HandoffBot) and bot.statuses(conversation_id) == []
    assert stack.server.console_key not in page.content()


def test_the_consoles_own_page_works_in_the_same_browser(
    stack: Stack, page: Page, attacker_site: tuple[str, str]
) -> None:
    """The control: with this run's key, on its own origin, the console lists and accepts the handoff."""
    _, conversation_id = attacker_site
    page.goto(stack.server.agent_console_url)
    entry = page.locator(f'#list-waiting button[title="{conversation_id}"]')
    expect(entry).to_be_visible(timeout=STEP_TIMEOUT_MS)
    entry.click()
    page.locator("#agent-name").fill("Ada")
    page.locator("#accept").click()
    expect(page.locator("#log")).to_contain_text("handoff accepted by Ada", timeout=STEP_TIMEOUT_MS)
    assert console_state(stack, conversation_id) == "accepted"


def test_the_console_renders_markdown_and_keeps_its_buttons_on_one_row_at_720_px(stack: Stack, page: Page) -> None:
    user_id = "markdown-user"
    bearer = {"Authorization": f"Bearer {SECRET}"}
    started = requests.post(f"{stack.domain}/conversations", json={"user": {"id": user_id}}, headers=bearer, timeout=10)
    conversation_id = started.json()["conversationId"]
    for text in ("try `1 end=1000000` or **two**\n- first\n- second", "agent"):
        message = {"type": "message", "text": text, "from": {"id": user_id, "name": "Mo"}}
        posted = requests.post(
            f"{stack.domain}/conversations/{conversation_id}/activities", json=message, headers=bearer, timeout=10
        )
        assert posted.status_code == 200, posted.text
    page.set_viewport_size({"width": 720, "height": 800})
    page.goto(stack.server.agent_console_url)
    entry = page.locator(f'#list-waiting button[title="{conversation_id}"]')
    expect(entry).to_be_visible(timeout=STEP_TIMEOUT_MS)
    entry.click()
    log = page.locator("#log")
    expect(log.locator("code", has_text="1 end=1000000").first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(log.locator("strong", has_text="two").first).to_be_visible()
    expect(log.locator("li", has_text="second").first).to_be_visible()
    assert "`" not in log.inner_text() and "**" not in log.inner_text()
    buttons = [page.locator(f"#{name}") for name in ("accept", "complete", "fail")]
    assert [button.inner_text() for button in buttons] == ["Accept", "Complete", "Return to bot"]
    boxes = [box for box in (button.bounding_box() for button in buttons) if box is not None]
    middles = [box["y"] + box["height"] / 2 for box in boxes]
    assert len(boxes) == 3 and max(middles) - min(middles) < min(box["height"] for box in boxes) / 2, boxes
