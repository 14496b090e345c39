"""A Web Chat page served by the local Direct Line: the page gets a token here, so the secret stays server-side."""

from __future__ import annotations

import html
import json

from aiohttp import web

from localdev.directline.activities import random_id
from localdev.directline.client_api import CHANNEL

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <title>__TITLE__ – local Web Chat</title>
  <style>
    html, body { height: 100%; margin: 0; font-family: system-ui, sans-serif; }
    body { display: flex; flex-direction: column; }
    header { display: flex; justify-content: space-between; padding: .5rem 1rem; background: #0063b1; color: #fff;
             font-size: .95rem; }
    header a { color: #fff; }
    #webchat { flex: 1; min-height: 0; }
    #error { color: #a4262c; padding: 1rem; }
  </style>
</head>
<body>
  <header>
    <span>__TITLE__ · local Direct Line</span>
    <a href="/agent" target="_blank" rel="noopener">Agent console →</a>
  </header>
  <div id="webchat" role="main"></div>
  <script src="/webchat.js"></script>
  <script>
    (async function () {
      const domain = __DOMAIN__;
      try {
        const res = await fetch('/local/token', { method: 'POST' });
        if (!res.ok) throw new Error('token request failed: ' + res.status);
        const { token } = await res.json();
        window.WebChat.renderWebChat(
          { directLine: window.WebChat.createDirectLine({ token, domain, webSocket: true }) },
          document.getElementById('webchat')
        );
      } catch (err) {
        const box = document.getElementById('webchat');
        box.id = 'error';
        box.textContent = 'Could not start Web Chat: ' + err.message;
      }
    })();
  </script>
</body>
</html>
"""


async def page(request: web.Request) -> web.Response:
    settings = request.app[CHANNEL].settings
    body = _PAGE.replace("__TITLE__", html.escape(settings.bot_name)).replace(
        "__DOMAIN__", json.dumps(settings.domain).replace("</", "<\\/")
    )
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


async def webchat_js(request: web.Request) -> web.StreamResponse:
    path = request.app[CHANNEL].settings.webchat_js
    if path is None or not path.is_file():
        raise web.HTTPNotFound(reason="botframework-webchat is not installed: run `npm ci` in the project root")
    return web.FileResponse(path, headers={"Content-Type": "application/javascript"})


async def local_token(request: web.Request) -> web.Response:
    """A token for a new conversation and a fresh user id (dl_ prefix: the user id is embedded in the token)."""
    channel = request.app[CHANNEL]
    user_id = f"dl_{random_id(12)}"
    conversation = channel.store.create()
    return web.json_response({**channel.token_answer(conversation.id, user_id), "userId": user_id})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/webchat.js", webchat_js)
    app.router.add_post("/local/token", local_token)
