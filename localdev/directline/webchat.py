"""A Web Chat page served by the local Direct Line. Like a production page, it gets its token from a
server that holds the secret (the app's /api/directline/token, `token_endpoint`): the first visit gets
a new user id and its proof, which the page keeps in localStorage and sends on every later visit, so
a reload is the same user (and the bot still knows their name)."""

from __future__ import annotations

import html
import json

from aiohttp import web

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
      const tokenEndpoint = __TOKEN_ENDPOINT__;
      const botInitials = __BOT_INITIALS__;
      const saved = 'localWebChatUser';  // {userId, userProof}: who this browser is, across reloads
      try {
        if (!tokenEndpoint) {
          throw new Error('no token endpoint: start the local Direct Line with --token-endpoint URL ' +
                          "(make run passes the app's /api/directline/token)");
        }
        const ask = (user) => fetch(tokenEndpoint, {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(user)
        });
        let user = {};
        try { user = JSON.parse(localStorage.getItem(saved) || '{}') || {}; } catch (ignored) { user = {}; }
        let res = await ask(user.userId && user.userProof ? { userId: user.userId, userProof: user.userProof } : {});
        if (res.status === 403) res = await ask({});  // the proof's key changed: start as a new user
        if (!res.ok) throw new Error('token request failed: ' + res.status + ' ' + (await res.text()));
        const { token, userId, userProof } = await res.json();
        localStorage.setItem(saved, JSON.stringify({ userId, userProof }));
        window.WebChat.renderWebChat(
          {
            directLine: window.WebChat.createDirectLine({ token, domain, webSocket: true }),
            userID: userId,
            styleOptions: {
              hideUploadButton: true,  // the bot takes no files
              botAvatarInitials: botInitials,
              botAvatarBackgroundColor: '#0063b1',
              userAvatarInitials: 'You',
              suggestedActionLayout: 'flow',  // buttons wrap instead of scrolling sideways
            },
          },
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


def initials(name: str) -> str:
    """ "Long Operations Bot" -> "LO": the bot's avatar in Web Chat."""
    return "".join(word[0] for word in name.split()[:2]).upper() or "B"


async def page(request: web.Request) -> web.Response:
    settings = request.app[CHANNEL].settings
    body = (
        _PAGE.replace("__TITLE__", html.escape(settings.bot_name))
        .replace("__DOMAIN__", _script_value(settings.domain))
        .replace("__TOKEN_ENDPOINT__", _script_value(settings.token_endpoint))
        .replace("__BOT_INITIALS__", _script_value(initials(settings.bot_name)))
    )
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


async def webchat_js(request: web.Request) -> web.StreamResponse:
    path = request.app[CHANNEL].settings.webchat_js
    if path is None or not path.is_file():
        raise web.HTTPNotFound(reason="botframework-webchat is not installed: run `npm ci` in the project root")
    return web.FileResponse(path, headers={"Content-Type": "application/javascript"})


def _script_value(value: str | None) -> str:
    """A JSON literal safe inside <script> (no "</script>" in it can end the script early)."""
    return json.dumps(value).replace("</", "<\\/")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/webchat.js", webchat_js)
