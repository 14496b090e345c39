"""Intercepting every message, as the Bot Framework FAQ suggests: middleware that logs them to a table.

The SDK's TranscriptLoggerMiddleware logs what a turn asks to send, also the replies of a turn
attempt the unit of work later discards (services/turns/unit_of_work.py re-runs a turn that lost a
commit race). So this middleware records what was really sent, as the adapter sends it
(RecordsSentActivities, below the unit of work's hold), and the inbound activity once a unit of
work took it in; at the end of the turn everything goes to the recorder in one batch (one table
transaction) that is written in the background, so the turn never waits for it or fails by it.

Recorded: the user's activities, the bot's replies, proactive ones too (results, progress,
expiry notices: they are sent in a turn or a continued conversation, both pass this middleware),
and events the bot acted on, i.e. answered (a result told, a handoff status taken). Not recorded:
events the bot refused or ignored (a forged status, the late result of a cancelled operation), the
worker's own Direct Line conversation (its events never enter a unit of work, and nothing is sent
there), typing indicators and traces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botbuilder.core import Middleware, TurnContext
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse

from services.channel.activity_json import to_json
from services.turns.unit_of_work import sends_of

TRANSCRIPT_KEY = "transcript.turn"
_NOT_RECORDED = {ActivityTypes.typing, ActivityTypes.trace}


class Recorder(Protocol):
    def record(self, conversation_id: str, activities: list[dict[str, Any]]) -> None: ...


@dataclass
class TurnTranscript:
    """What one turn received (once a unit of work took it in) and really sent, serialised once each
    (the recorder stamps the replies, in order, after the activity they answer)."""

    received: dict[str, Any] | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    answered: bool = False  # the turn sent anything at all, typing included

    def add_sent(self, activities: list[Activity], responses: list[ResourceResponse]) -> None:
        self.answered = self.answered or bool(activities)
        for activity, response in zip(activities, responses, strict=False):
            if activity.type in _NOT_RECORDED:
                continue
            data = to_json(activity)
            if not data.get("id") and response is not None and response.id:
                data["id"] = response.id
            sender = data.get("from")
            if isinstance(sender, dict) and not sender.get("role"):
                # Channels need not mark the bot's account; the transcript (its redaction, the
                # Emulator's sides) tells the bot from the user by the role.
                data["from"] = {**sender, "role": "bot"}
            data.pop("timestamp", None)  # stamped by the recorder, after what came before in the turn
            self.sent.append(data)

    def in_order(self) -> list[dict[str, Any]]:
        return ([self.received] if self.received is not None else []) + self.sent


def transcript_of(context: TurnContext) -> TurnTranscript | None:
    return context.turn_state.get(TRANSCRIPT_KEY)  # type: ignore[return-value]  # the turn's own, or None


class CommittedTranscriptMiddleware(Middleware):
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    # The SDK annotates `logic` as taking the context, but calls it with none.
    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> None:  # type: ignore[override]
        turn = TurnTranscript()
        context.turn_state[TRANSCRIPT_KEY] = turn
        try:
            await logic()
        finally:
            if _acted_on(context, turn):
                turn.received = to_json(context.activity)
            activities = turn.in_order()
            conversation = context.activity.conversation
            if activities and conversation is not None and conversation.id:
                self._recorder.record(conversation.id, activities)


def _acted_on(context: TurnContext, turn: TurnTranscript) -> bool:
    """A unit of work ran it as a turn of its user's conversation (not the worker's), and, for an event,
    the bot answered it: an event it refused or ignored is not part of what happened."""
    activity = context.activity
    if sends_of(context) is None or activity.type in _NOT_RECORDED:
        return False
    return activity.type != ActivityTypes.event or turn.answered


class RecordsSentActivities:
    """Adapter mixin, after HoldsRepliesUntilCommit and before the adapter class: what the channel
    accepted goes into the turn's transcript."""

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        responses: list[ResourceResponse] = await super().send_activities(context, activities)  # type: ignore[misc]
        turn = transcript_of(context)
        if turn is not None:
            turn.add_sent(activities, responses)
        return responses
