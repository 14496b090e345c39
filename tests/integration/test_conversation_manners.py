"""How the conversation behaves for a person, through the messages handler: commands at any prompt,
names checked, misunderstanding said and a person offered, bad parameters refused, short prompts."""

from __future__ import annotations

import uuid

import pytest

from bootstrap import Composition
from tests.integration.test_operation_flow import queued_requests
from tests.support.activities import activity, joined
from tests.support.app import send
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators


class Chat:
    def __init__(self, app: Composition, connector: RecordingConnector) -> None:
        self.app, self.connector = app, connector
        self.conversation = f"c-{uuid.uuid4()}"

    async def open(self) -> list[str]:
        return await self._send(joined(self.conversation, self.connector.service_url))

    async def say(self, text: str) -> list[str]:
        """The bot's messages in answer to `text`."""
        return await self._send(activity(self.conversation, self.connector.service_url, text=text))

    async def _send(self, body: dict[str, object]) -> list[str]:
        before = len(self.connector.messages(self.conversation))
        assert (await send(self.app, body)).status == 200
        return self.connector.messages(self.conversation)[before:]

    async def queued(self) -> list[dict[str, object]]:
        return [
            r for r in await queued_requests(self.app) if r["conversation"]["conversation"]["id"] == self.conversation
        ]


@pytest.fixture
async def chat(app: Composition, connector: RecordingConnector) -> Chat:
    chat = Chat(app, connector)
    await chat.open()
    return chat


@pytest.mark.parametrize("command", ["help", "menu", "cancel", "Help!", "start over"])
async def test_a_command_at_the_name_prompt_is_never_taken_as_a_name(chat: Chat, command: str) -> None:
    replies = await chat.say(command)
    assert not any(reply.startswith("Nice to meet you") for reply in replies)
    assert replies[-1] == "What's your name?"
    assert (await chat.say("Ada"))[0] == "Nice to meet you, Ada! I'll remember your name."


async def test_help_says_what_the_bot_does_and_asks_again(chat: Chat) -> None:
    [help_text, again] = await chat.say("help")
    assert help_text.startswith("I run long operations for you")
    assert "1. prime report — " in help_text and "'cancel'" in help_text and "'agent'" in help_text
    assert again == "What's your name?"


@pytest.mark.parametrize(
    ("name", "asked"),
    [
        ("hello", "Hello to you too! What name shall I call you?"),
        ("x" * 61, "That's longer than I can remember (60 characters at most). What shall I call you?"),
        ("12345", "I'd like to call you by your name: what is it? (Just the name, please.)"),
    ],
)
async def test_what_is_not_a_name_is_asked_again(chat: Chat, name: str, asked: str) -> None:
    assert await chat.say(name) == [asked]


async def test_the_full_menu_once_then_a_short_line_with_the_list_on_help(chat: Chat) -> None:
    [_, menu] = await chat.say("Ada")
    assert menu.startswith("Which long operation shall I run, Ada?\n\n1. prime report — ")
    await chat.say("1 end=1000")
    replies = await chat.say("cancel")
    short_menu = "Which long operation shall I run, Ada? Tap one, or say 'help' to see what each does."
    assert replies == ["Cancelled the prime report.", short_menu]
    [help_text, again] = await chat.say("help")
    assert "1. prime report — " in help_text and again == replies[-1]


async def test_cancel_at_the_menu_is_not_a_misunderstanding(chat: Chat) -> None:
    await chat.say("Ada")
    for _ in range(4):  # more than HandoffAfterMisunderstandings (3)
        assert (await chat.say("cancel"))[0] == "There's nothing running to cancel."
    assert not any("person" in reply for reply in await chat.say("1 end=1000"))
    assert len(await chat.queued()) == 1


async def test_menu_while_an_operation_runs_stops_it_and_starts_over(chat: Chat) -> None:
    await chat.say("Ada")
    await chat.say("sales report")
    replies = await chat.say("menu")
    assert replies[0] == "Stopped the sales report."
    assert replies[-1].startswith("Which long operation shall I run, Ada?")
    assert (await chat.app.conversations.read([f"directline/conversations/{chat.conversation}"]))[
        f"directline/conversations/{chat.conversation}"
    ]["ConversationRecord"]["pendingOperation"] is None


async def test_a_misunderstanding_is_said_with_what_is_expected(chat: Chat) -> None:
    await chat.say("Ada")
    [sorry] = await chat.say("bake me a cake")
    assert sorry == (
        "Sorry, I didn't understand “bake me a cake”. Pick one of the operations: tap a button, or type its number "
        "or name."
    )


async def test_repeated_misunderstanding_offers_a_person_instead_of_handing_over(chat: Chat) -> None:
    await chat.say("Ada")
    await chat.say("what")
    await chat.say("huh")
    [offer] = await chat.say("bake me a cake")
    assert offer == "Sorry, I keep misunderstanding you. Shall I bring in a person to help?"
    # Declined: the bot carries on, and the count starts again.
    replies = await chat.say("no")
    assert replies[0] == "OK, let's carry on." and replies[-1].startswith("Which long operation shall I run, Ada?")
    await chat.say("what")
    await chat.say("huh")
    await chat.say("bake me a cake")
    # Accepted: now the person is asked for.
    replies = await chat.say("yes")
    assert replies[0].startswith("I'm asking a person to take over")


@pytest.mark.parametrize(
    ("choice", "refusal"),
    [
        (
            "prime report end=abc",
            "I can't run the prime report like that: end must be a whole number from 1 to 5,000,000,000 "
            "(default 500,000,000), not 'abc'.",
        ),
        ("1 end=", "I can't run the prime report like that: end needs a value: a whole number from 1 to"),
        ("1 frobnicate=5", "I can't run the prime report like that: prime report has no parameter called 'frobnicate'"),
        ("1 end=0", "I can't run the prime report like that: end must be a whole number from 1 to 5,000,000,000"),
    ],
)
async def test_a_bad_parameter_is_named_and_nothing_starts(chat: Chat, choice: str, refusal: str) -> None:
    await chat.say("Ada")
    replies = await chat.say(choice)
    assert replies[0].startswith(refusal)
    assert await chat.queued() == []


async def test_after_a_notification_command_the_menu_is_asked_again_with_its_buttons(
    chat: Chat, connector: RecordingConnector
) -> None:
    await chat.say("Ada")
    replies = await chat.say("notify me about pizza")
    assert replies[0].startswith("OK: I'll tell you here about “pizza”.")
    assert replies[-1].startswith("Which long operation shall I run, Ada?")
    last = [a for a in connector.activities if a["_conversation"] == chat.conversation][-1]
    assert [action["value"] for action in last["suggestedActions"]["actions"]][:2] == ["prime report", "sales report"]
