"""Bad input, exhaustively: a property-based fuzz of POST /api/messages over activity-shaped bodies.

Whatever a caller posts, the messages handler answers 2xx, or a 4xx whose JSON error message names
the problem; never a 5xx nor a traceback; and the conversation's next valid turn still works.
Bodies start as the valid activities a channel sends, then have fields dropped, retyped, filled with
odd unicode, huge or deeply nested values; or are not JSON, or not sent as JSON, at all.

Runs against the app in local mode (authentication off, so the body's parsing is what is fuzzed;
tests/integration/test_authentication.py covers tokens), Azurite, the Cosmos DB stand-in and a
recording Connector. Derandomized: the same examples every run, so CI is stable.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bootstrap import Composition
from handlers.http_types import HttpResponseData
from tests.support.activities import activity, joined
from tests.support.app import send
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators

# The fields a turn cannot do without, as the handler names them in its errors.
REQUIRED = ("type", "serviceUrl", "channelId", "conversation.id", "from.id", "recipient.id")

# Paths the mutations aim at: the required fields, their parents, and fields the bot reads or stores.
PATHS = (
    *REQUIRED,
    "conversation",
    "from",
    "recipient",
    "id",
    "text",
    "name",
    "value",
    "locale",
    "timestamp",
    "localTimestamp",
    "channelData",
    "membersAdded",
    "entities",
    "attachments",
    "replyToId",
    "from.role",
    "conversation.isGroup",
    "suggestedActions",
)

ODD_TEXT = (
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\ud800",  # an unpaired surrogate: valid JSON text, not encodable as UTF-8
            "a\udfffb",
            "\u202eevil\u202c",
            "e\u0301\u0301\u0301",
            "🧪" * 50,
            "\ufeff",
            "../../etc/passwd",
            "a/b?c#d\\e",
            "%00%2F",
            "\r\n",
            "null",
            "ftp://example.com/",
            "127.0.0.1",
            "//127.0.0.1/",
            "http://",
            "http:///nohost",
            "http://[::1",
            "http://127.0.0.1:99999/",
            "javascript:alert(1)",
            "data:text/plain,x",
        ]
    )
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
)

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ODD_TEXT
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` times: written as JSON text directly, since json.dumps itself would recurse."""

    depth: int
    kind: str  # "list" or "dict"

    def text(self) -> str:
        opening, closing = ("[", "]") if self.kind == "list" else ('{"a":', "}")
        return opening * self.depth + '"bottom"' + closing * self.depth


def encode(body: Any) -> bytes:
    """JSON text of a body whose values may include Deep ones."""
    deep: dict[str, Deep] = {}

    def placeholder(value: object) -> str:
        if isinstance(value, Deep):
            key = f"__deep_{len(deep)}__"
            deep[key] = value
            return key
        raise TypeError(type(value).__name__)

    text = json.dumps(body, default=placeholder)
    for key, value in deep.items():
        text = text.replace(json.dumps(key), value.text())
    return text.encode()  # json.dumps escapes everything outside ASCII, unpaired surrogates included


HUGE_OR_DEEP = st.one_of(
    st.integers(min_value=1, max_value=3).map(lambda n: "x" * (n * 70_000)),  # up to the size limit and past it
    st.builds(Deep, st.sampled_from([50, 900, 5_000, 60_000]), st.sampled_from(["list", "dict"])),
    st.integers(min_value=1, max_value=2).map(lambda n: list(range(n * 20_000))),
)

DROP = object()  # a mutation that removes the field


@dataclass
class Mutation:
    path: str
    value: Any  # DROP, or what the field becomes


@dataclass
class Case:
    """One request: a body (JSON-able or raw bytes), its content type, and what was done to it."""

    body: Any
    content_type: str
    mutations: list[Mutation] = field(default_factory=list)
    raw: bool = False
    auth: str = ""


def apply(body: dict[str, Any], mutation: Mutation) -> None:
    *parents, leaf = mutation.path.split(".")
    target: Any = body
    for name in parents:
        if not isinstance(target, dict) or not isinstance(target.get(name), dict):
            return  # an earlier mutation already replaced the parent
        target = target[name]
    if not isinstance(target, dict):
        return
    if mutation.value is DROP:
        target.pop(leaf, None)
    else:
        target[leaf] = mutation.value


MUTATIONS = st.builds(
    Mutation,
    path=st.sampled_from(PATHS),
    value=st.one_of(st.just(DROP), JSON_VALUES, ODD_TEXT, HUGE_OR_DEEP),
)

CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 12
    + ["application/json; charset=utf-8", "Application/JSON", "text/plain", "", "application/x-www-form-urlencoded"]
)

RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"message"',
            b"\xef\xbb\xbf{}",
            b'{"type": "message"',
            b"{'type': 'message'}",
            b'{"type": "message", "type": 5}',
            b'{"type": NaN}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        ]
    ),
)

# Activity types other than those the bot expects, and near misses of "message".
ACTIVITY_TYPES = st.sampled_from(
    ["invoke", "typing", "endOfConversation", "messageReaction", "installationUpdate", "messageUpdate",
     "messageDelete", "trace", "handoff", "command", "commandResult", "contactRelationUpdate", "suggestion",
     "deleteUserData", "Message", "message ", "🧪"]
)  # fmt: skip

# Headers that are no token at all: judged without fetching any key (tokens: test_authentication.py).
AUTH_HEADERS = st.sampled_from(
    ["", "", "", "", "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000]
)


@st.composite
def cases(draw: st.DrawFn, conversation: str, service_url: str) -> Case:
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return Case(draw(RAW_BODIES), draw(CONTENT_TYPES), raw=True)
    kind = draw(st.sampled_from(["message", "message", "joined", "event", "other"]))
    if kind == "joined":
        body = joined(conversation, service_url)
    elif kind == "event":
        body = activity(conversation, service_url, type="event", name="LongOperationResponse", value={"x": 1})
    elif kind == "other":
        body = activity(conversation, service_url, type=draw(ACTIVITY_TYPES), name="x", value={"x": 1})
    else:
        body = activity(conversation, service_url, text=draw(st.sampled_from(["hi", "Ada", "1", "cancel"])))
    # A valid service URL written another way must still work.
    body["serviceUrl"] = draw(st.sampled_from([service_url, service_url.rstrip("/"), service_url.upper()]))
    mutations = draw(st.lists(MUTATIONS, min_size=0, max_size=3))
    for mutation in mutations:
        apply(body, mutation)
    return Case(body, draw(CONTENT_TYPES), mutations, auth=draw(AUTH_HEADERS))


def assert_answered_well(case: Case, response: HttpResponseData) -> None:
    shown = f"{response.status} {response.body!r:.300}"
    if isinstance(case.body, dict) and case.body.get("type") == "invoke" and response.status == 501:
        return  # the Bot Framework's answer to an invoke a bot does not implement (this bot implements none)
    assert 200 <= response.status < 300 or 400 <= response.status < 500, shown
    assert "Traceback" not in json.dumps(response.body), shown
    if response.status >= 400:
        message = response.body["error"]["message"]
        assert isinstance(message, str) and message, shown
        if response.status == 400 and not case.raw:
            assert names_the_problem(case, message), shown


def names_the_problem(case: Case, message: str) -> bool:
    """A refused activity's message names a field that was changed, or what is wrong with the JSON."""
    changed = {mutation.path.split(".")[0] for mutation in case.mutations}
    return any(name in message for name in changed) or any(
        phrase in message for phrase in ("nests deeper", "is not a JSON value", "out of range")
    )


STAGES = st.sampled_from([(), ("hi",), ("hi", "Ada")])  # (see the test)
FOLLOW_UP = "hello again"


@dataclass
class Target:
    app: Composition
    connector: RecordingConnector
    # What the bot answers FOLLOW_UP after each stage's turns, in a conversation that saw nothing else.
    expected: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    async def turns(self, conversation: str, texts: tuple[str, ...]) -> None:
        for text in texts:
            assert (await send(self.app, activity(conversation, self.connector.service_url, text=text))).status == 200

    async def replies_to_follow_up(self, conversation: str) -> list[str]:
        before = len(self.connector.messages(conversation))
        response = await send(self.app, activity(conversation, self.connector.service_url, text=FOLLOW_UP))
        assert response.status == 200, response.body
        return self.connector.messages(conversation)[before:]

    async def expected_after(self, stage: tuple[str, ...]) -> list[str]:
        if stage not in self.expected:
            control = f"control-{uuid.uuid4()}"
            await self.turns(control, stage)
            self.expected[stage] = await self.replies_to_follow_up(control)
        return self.expected[stage]


@pytest.fixture
async def target(app: Composition, connector: RecordingConnector) -> Target:
    return Target(app, connector)


def is_intact_message(case: Case, conversation: str) -> bool:
    """A message of this conversation with its reply route intact: accepted, it must be answered."""
    body = case.body
    return (
        isinstance(body, dict)
        and body.get("type") == "message"
        and isinstance(body.get("conversation"), dict)
        and body["conversation"].get("id") == conversation
    )


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    # One app and one recording Connector serve every example: each example has its own conversation.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_any_body_gets_a_clear_answer_and_the_conversation_goes_on(target: Target, data: st.DataObject) -> None:
    conversation = f"c-{uuid.uuid4()}"
    # Where in the conversation the body lands: first, as the answer to "What's your name?", or as
    # the choice from the menu.
    stage = data.draw(STAGES)
    await target.turns(conversation, stage)
    case = data.draw(cases(conversation, target.connector.service_url))
    request: dict[str, str] = {"content_type": case.content_type}
    if case.auth:
        request["auth"] = case.auth
    before = len(target.connector.messages(conversation))
    response = await send(target.app, case.body if case.raw else encode(case.body), **request)
    event(f"status {response.status}")  # the spread of answers: pytest --hypothesis-show-statistics
    assert_answered_well(case, response)

    if 200 <= response.status < 300 and is_intact_message(case, conversation):
        assert len(target.connector.messages(conversation)) > before, "an accepted message went unanswered"
    replies = await target.replies_to_follow_up(conversation)
    if response.status >= 400:  # a refused body changed nothing: the conversation goes on as if it never came
        assert replies == await target.expected_after(stage)
    else:
        assert replies


@pytest.mark.parametrize(
    "service_url",
    ["not a url", "ftp://127.0.0.1/", "http://", "/v3/relative", "127.0.0.1:80", "//127.0.0.1/", "http://[::1",
     "http://127.0.0.1:99999/", "javascript:alert(1)", "http://127.0.0.1/ x", 5, [], {"url": "http://127.0.0.1/"}],
)  # fmt: skip
async def test_a_service_url_that_is_not_an_absolute_http_url_is_400_naming_it(
    target: Target, service_url: Any
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    response = await send(target.app, activity(conversation, service_url, text="hi"))
    assert response.status == 400
    assert "serviceUrl" in response.body["error"]["message"]
    assert target.connector.messages(conversation) == []
    assert await target.replies_to_follow_up(conversation) == await target.expected_after(())
