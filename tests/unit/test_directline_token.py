"""POST /api/directline/token against the real local Direct Line (an echo bot behind it): the token a
page gets starts a conversation as the user id it was issued, a returning page keeps its id only
with its proof, and bad requests or a Direct Line that cannot answer get plain 4xx / 503 answers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bootstrap import Composition
from handlers.directline_token import (
    DirectLineTokenDependencies,
    handle_directline_token,
    proof_key,
)
from handlers.http_types import HttpRequestData, HttpResponseData
from localdev.directline.tests.support import SECRET, Stack, running_stack
from localdev.processes import free_port
from services.channel.directline_client import DirectLineClient
from services.settings import load_settings

SIGNING_KEY = "k" * 40
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running


def dependencies(endpoint: str, secret: str = SECRET, signing_key: str = SIGNING_KEY) -> DirectLineTokenDependencies:
    client = DirectLineClient(endpoint, secret, max_attempts=2, base_delay=0.0, sleep=lambda _: None, timeout=5.0)
    return DirectLineTokenDependencies(
        generate_token=lambda user_id: asyncio.to_thread(client.generate_token, user_id),
        proof_key=proof_key(signing_key),
    )


def ask(deps: DirectLineTokenDependencies, body: Any = None, headers: dict[str, str] | None = None) -> HttpResponseData:
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    request = HttpRequestData("POST", JSON if headers is None else headers, raw)
    return asyncio.run(handle_directline_token(request, deps))


def start_conversation(stack: Stack, token: str) -> str:
    started = requests.post(
        f"{stack.domain}/conversations", headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10
    )
    assert started.status_code in (200, 201), started.text
    return str(started.json()["conversationId"])


def welcomed(stack: Stack, conversation_id: str) -> str:
    """The user id the bot was told joined the conversation (the echo bot says "welcome <id>")."""
    stack.bot.wait_for(lambda bot: any(a.get("text", "").startswith("welcome ") for a in bot.sent_in(conversation_id)))
    texts = [a["text"] for a in stack.bot.sent_in(conversation_id) if a.get("text", "").startswith("welcome ")]
    return str(texts[0].removeprefix("welcome "))


def test_a_first_call_gets_a_new_unguessable_user_and_a_token_that_speaks_only_as_them(stack: Stack) -> None:
    answer = ask(dependencies(stack.domain))
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.body
    assert set(body) == {"token", "expires_in", "conversationId", "userId", "userProof"}
    assert re.fullmatch(r"dl_[0-9a-f]{32}", body["userId"]) and body["expires_in"] == 1800
    assert ask(dependencies(stack.domain)).body["userId"] != body["userId"]

    conversation_id = start_conversation(stack, body["token"])
    assert conversation_id == body["conversationId"]
    assert welcomed(stack, conversation_id) == body["userId"]
    posted = requests.post(
        f"{stack.domain}/conversations/{conversation_id}/activities",
        headers={"Authorization": f"Bearer {body['token']}"},
        json={"type": "message", "text": "hi", "from": {"id": "someone-else"}},
        timeout=10,
    )
    assert posted.status_code == 200
    assert stack.bot.received_in(conversation_id)[-1]["from"]["id"] == body["userId"]


def test_a_returning_page_keeps_its_user_with_its_proof(stack: Stack) -> None:
    deps = dependencies(stack.domain)
    first = ask(deps, {}).body
    again = ask(deps, {"userId": first["userId"], "userProof": first["userProof"]})
    assert again.status == 200
    assert again.body["userId"] == first["userId"] and again.body["userProof"] == first["userProof"]
    assert again.body["token"] != first["token"] and again.body["conversationId"] != first["conversationId"]
    assert welcomed(stack, start_conversation(stack, again.body["token"])) == first["userId"]


def tampered(proof: str) -> str:
    """The proof with its first character changed (every bit of the first character is data: a changed
    last character may differ only in padding bits; and the change never gives back the same text)."""
    return ("B" if proof[0] == "A" else "A") + proof[1:]


def test_naming_someone_elses_id_without_its_proof_gets_no_token(stack: Stack) -> None:
    deps = dependencies(stack.domain)
    victim, attacker = ask(deps).body, ask(deps).body
    conversations = len(stack.server.channel.store)
    for forged in (
        {"userId": victim["userId"], "userProof": attacker["userProof"]},  # a real proof, of another id
        {"userId": victim["userId"], "userProof": tampered(victim["userProof"])},
        {"userId": victim["userId"], "userProof": "\ud800"},
    ):
        refused = ask(deps, forged)
        assert refused.status == 403, forged
        assert refused.body["error"]["code"] == "InvalidUserProof" and "token" not in refused.body
    # A proof from a deployment with another OperationSigningKey is no proof here.
    elsewhere = ask(dependencies(stack.domain, signing_key="o" * 40)).body
    assert ask(deps, {"userId": elsewhere["userId"], "userProof": elsewhere["userProof"]}).status == 403
    assert len(stack.server.channel.store) == conversations + 1  # only the other deployment's first call


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"userId": "dl_x"}, "'userProof' is missing"),
        ({"userProof": "abc"}, "'userId' is missing"),
        ({"userId": "dl_x", "userProof": "p", "user": {"id": "dl_y"}}, "'user'"),
        ({"name": "Ada", "admin": True}, "'admin', 'name'"),
        ({"userId": 7, "userProof": "p"}, "'userId' must be a non-empty string"),
        ({"userId": "dl_x", "userProof": ["p"]}, "'userProof' must be a non-empty string"),
        ({"userId": "", "userProof": "p"}, "'userId' must be a non-empty string"),
        ({"userId": "dl_" + "x" * 300, "userProof": "p"}, "at most 256 characters"),
        (["dl_x"], "must be a JSON object"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_malformed_requests_get_a_400_naming_the_problem(stack: Stack, body: Any, named: str) -> None:
    refused = ask(dependencies(stack.domain), body)
    assert refused.status == 400 and named in refused.body["error"]["message"], refused.body


def test_a_body_that_is_not_json_gets_415_and_other_methods_405(stack: Stack) -> None:
    deps = dependencies(stack.domain)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        refused = ask(deps, b"userId=dl_x&userProof=p", {"content-type": content_type} if content_type else {})
        assert refused.status == 415 and "application/json" in refused.body["error"]["message"]
    assert ask(deps, None, {}).status == 200  # no body: nothing to judge, a first call
    assert ask(deps, {}, {"content-type": "application/json; charset=utf-8"}).status == 200
    get = asyncio.run(handle_directline_token(HttpRequestData("GET", {}, b""), deps))
    assert get.status == 405 and get.headers["Allow"] == "POST"
    big = ask(deps, {"userId": "x" * 5000, "userProof": "p"})
    assert big.status == 413


def test_direct_line_down_or_refusing_gets_503_in_plain_words(stack: Stack) -> None:
    down = dependencies(f"http://127.0.0.1:{free_port()}/v3/directline")
    wrong_secret = dependencies(stack.domain, secret="not-the-secret")
    for deps in (down, wrong_secret):
        answer = ask(deps)
        assert answer.status == 503 and answer.headers["Retry-After"] == "5"
        assert answer.body == {
            "error": {
                "code": "DirectLineUnavailable",
                "message": "The chat service cannot start a conversation right now. Try again in a few seconds.",
            }
        }


def test_the_app_exchanges_the_browser_sites_key_when_one_is_set(stack: Stack) -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "CosmosDbEndpoint": "http://127.0.0.1:9/",
        "DirectLineEndpoint": stack.domain,
        "OperationSigningKey": SIGNING_KEY,
        "HandoffSigningKey": "h" * 40,
    }
    only_worker = Composition(load_settings({**base, "DirectLineSecret": SECRET}))
    answer = asyncio.run(handle_directline_token(HttpRequestData("POST", {}, b""), only_worker.directline_token))
    assert answer.status == 200
    own_site = Composition(
        load_settings({**base, "DirectLineSecret": "the-worker-site", "DirectLineClientSecret": SECRET})
    )
    answer = asyncio.run(handle_directline_token(HttpRequestData("POST", {}, b""), own_site.directline_token))
    assert answer.status == 200
    # The proof made by the app's own wiring is the one the handler checks.
    returning = {"userId": answer.body["userId"], "userProof": answer.body["userProof"]}
    again = ask(dependencies(stack.domain), returning)
    assert again.status == 200 and again.body["userId"] == returning["userId"]
