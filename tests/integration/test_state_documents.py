"""The conversation state documents the bot stores restore, with jsonpickle as with the state codec, to the
same objects, so the app before the codec and after it read each other's documents; they are smaller than
jsonpickle's; and a conversation stored before the codec carries on where it stopped."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonpickle import Pickler, Unpickler

from bootstrap import Composition
from services.state import state_codec
from services.state.cosmos_storage import escape_key
from tests.support.activities import activity, joined
from tests.support.app import send
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector

pytestmark = pytest.mark.emulators

STORED_BEFORE_CODEC = json.loads(
    (Path(__file__).parents[1] / "support" / "stored_states_before_codec.json").read_text(encoding="utf-8")
)
OLD_CONVERSATION = "profile-a29aaf69"  # the conversation those documents were written in


def key_of(conversation: str) -> str:
    return f"directline/conversations/{conversation}"


async def stored_document(app: Composition, conversation: str) -> dict[str, Any]:
    container = await app.cosmos.conversation_container()
    doc_id = escape_key(key_of(conversation))
    return (await container.read_item(item=doc_id, partition_key=doc_id))["document"]


def jsonpickle_form(value: Any) -> Any:
    return Pickler().flatten(value)


async def test_each_state_the_bot_stores_is_what_jsonpickle_restores_smaller(
    app: Composition, connector: RecordingConnector
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    turns = [joined(conversation, url)] + [
        activity(conversation, url, text=text)
        for text in ("hello", "Ada", "what?", "no idea", "prime report end=1000", "status", "cancel")
    ]
    documents = []
    for turn in turns:
        await send(app, turn)
        documents.append(await stored_document(app, conversation))
    assert any("Starting the prime report." in text for text in connector.messages(conversation))
    for document in documents:
        by_jsonpickle = Unpickler().restore(copy.deepcopy(document))  # as the app before the codec reads it
        by_codec = state_codec.restore(copy.deepcopy(document))
        assert jsonpickle_form(by_codec) == jsonpickle_form(by_jsonpickle)
        assert state_codec.flatten(by_codec) == document  # unchanged state, unchanged document: not written
        assert state_codec.flatten(by_jsonpickle) == document
    # An Activity (in a prompt's options) is stored without the ~40 attributes it leaves unset.
    activities = [json.dumps(document).count('"botbuilder.schema._models_py3.Activity"') for document in documents]
    assert sum(activities) >= 2 * len(documents) - 6  # prompts with a retry prompt, all but the operation's turns
    for document, count in zip(documents, activities, strict=True):
        full = len(json.dumps(jsonpickle_form(state_codec.restore(document))))
        assert len(json.dumps(document)) <= full - 700 * count


def old_document(name: str, conversation: str, url: str, now: float) -> dict[str, Any]:
    """A document stored before the codec, moved to a new conversation (its ids and its last access)."""
    text = json.dumps(STORED_BEFORE_CODEC[name]).replace(OLD_CONVERSATION, conversation)
    document = json.loads(text)
    document["ConversationRecord"]["lastAccessAt"] = now
    document["ConversationRecord"]["reference"]["serviceUrl"] = url
    return document


async def store_old(app: Composition, conversation: str, document: dict[str, Any]) -> None:
    container = await app.cosmos.conversation_container()
    key = key_of(conversation)
    await container.upsert_item(body={"id": escape_key(key), "realId": key, "document": document})


async def test_a_conversation_stored_before_the_codec_carries_on_at_its_prompts(
    app: Composition, connector: RecordingConnector, clock: FakeClock
) -> None:
    url = connector.service_url
    at_name = f"c-{uuid.uuid4()}"
    await store_old(app, at_name, old_document("at_the_name_prompt", at_name, url, clock.now))
    await send(app, activity(at_name, url, text="Ada"))
    assert connector.messages(at_name)[-1].startswith("Which long operation shall I run, Ada?")

    at_menu = f"c-{uuid.uuid4()}"
    await store_old(app, at_menu, old_document("at_the_menu_after_one_misunderstanding", at_menu, url, clock.now))
    await send(app, activity(at_menu, url, text="what?"))
    assert connector.messages(at_menu)[-1].startswith("Sorry, I didn't understand “what?”.")
    await send(app, activity(at_menu, url, text="1"))
    assert connector.messages(at_menu)[-1].startswith("Starting the prime report.")
