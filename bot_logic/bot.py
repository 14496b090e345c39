"""The bot's activity handler. It never saves state itself: the unit of work commits."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, cast

from botbuilder.core import ActivityHandler, BotState, TurnContext
from botbuilder.dialogs import DialogExtensions, DialogSet
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount

from bot_logic.clock import Clock
from bot_logic.conversation_record import (
    DIALOG_STATE_PROPERTY,
    RECORD_PROPERTY,
    ConversationRecord,
    ModelJson,
    already_handled,
    load_record,
    msrest_json,
    new_record,
    remember_activity,
    start_over,
    stored_record,
)
from bot_logic.dialogs.main_dialog import MainDialog
from bot_logic.effects import DurableEffects
from bot_logic.expiry import WELCOME_BACK_TEXT, is_expired
from bot_logic.handoff import (
    ACCEPTED,
    ACCEPTED_TEXT,
    COMPLETED,
    COMPLETED_TEXT,
    FAILED,
    FAILED_TEXT,
    REQUESTED_TEXT,
    STATUS_EVENT,
    STILL_WAITING_TEXT,
    TIMED_OUT_MESSAGE,
    USER_ASKED,
    WAITING,
    HandoffStatus,
    TranscriptSource,
    active_handoff,
    asks_for_a_person,
    end_handoff,
    fail_back_timed_out,
    initiation_event,
    start_handoff,
    status_event,
    timed_out,
    verified_status,
)
from bot_logic.notification_rules import normalise_topic
from bot_logic.notifications import NotificationSubscriptions
from bot_logic.operation_protocol import PROGRESS_EVENT
from bot_logic.operation_quota import QUOTA_PROPERTY, OperationQuota
from bot_logic.pending_operation import (
    PROGRESS_MESSAGE_GAP_INTERVALS,
    operation_event_refusal,
    progress_message_due,
    progress_text,
    result_reply,
    timeout_notice_once,
)
from bot_logic.turn_routing import is_operation_event
from bot_logic.user_profile import PROFILE_PROPERTY, display_name, get_profile

logger = logging.getLogger(__name__)

WELCOME = "Hello and welcome! I run long operations for you and tell you here when they are done."
WELCOME_BACK = "Welcome back, {name}!"
# "notify me about pizza", "stop notifications": subscriptions to events from outside (handlers/notifications.py).
NOTIFY_ME = re.compile(r"^(?:please\s+)?notify me (?:about|of|on)\s+(?P<topic>\S.{0,79}?)[\s.!]*$", re.IGNORECASE)
STOP_NOTIFICATIONS = re.compile(r"^(?:please\s+)?(?:stop|unsubscribe)(?: all)? notifications[\s.!]*$", re.IGNORECASE)
START_NOTIFICATIONS = re.compile(r"^(?:please\s+)?(?:start|resume)(?: all)? notifications[\s.!]*$", re.IGNORECASE)
STOPPED_TEXT = (
    "Done: I won't send you notifications any more{topics}. Say 'start notifications' to get direct notices again."
)
STARTED_TEXT = (
    "Done: notices sent to you directly reach you here again. To follow a topic too, say 'notify me about <topic>'."
)
ALREADY_STARTED_TEXT = (
    "Notices sent to you directly already reach you here. To follow a topic too, say 'notify me about <topic>'."
)
SUBSCRIPTION_TIMEOUT_SECONDS = 5.0
# Where a turn keeps the handoff.status it verified before anything else ran.
VERIFIED_STATUS_KEY = "handoff.verifiedStatus"
# A message the bot could not take in (its conversation stayed busy); {text} is the message.
BUSY_TEXT = "Sorry, I couldn't take in “{text}”: I was still busy with your earlier messages. Please send it again."


class LongOperationBot(ActivityHandler):
    def __init__(
        self,
        conversation_state: BotState,
        user_state: BotState,
        effects: DurableEffects,
        clock: Clock,
        operation_timeout_seconds: int,
        expire_after_seconds: int,
        subscriptions: NotificationSubscriptions,
        transcripts: TranscriptSource,
        handoff_timeout_seconds: int,
        handoff_after_misunderstandings: int,
        operation_quota: OperationQuota,
        handoff_signing_key: str,
        progress_messages_per_operation: int = 2,
        progress_interval_seconds: float = 5.0,
        model_json: ModelJson = msrest_json,
    ) -> None:
        self._model_json = model_json
        self._progress_messages = progress_messages_per_operation
        self._progress_gap = PROGRESS_MESSAGE_GAP_INTERVALS * progress_interval_seconds
        self._conversation_state = conversation_state
        self._handoff_signing_key = handoff_signing_key
        self._expire_after_seconds = expire_after_seconds
        self._effects = effects
        self._subscriptions = subscriptions
        self._transcripts = transcripts
        self._handoff_timeout = handoff_timeout_seconds
        self.records = conversation_state.create_property(RECORD_PROPERTY)
        self._dialog_state = conversation_state.create_property(DIALOG_STATE_PROPERTY)
        self._user_state = user_state
        self.profiles = user_state.create_property(PROFILE_PROPERTY)
        self._quota_usage = user_state.create_property(QUOTA_PROPERTY)
        self._clock = clock
        self._dialog = MainDialog(
            self.profiles,
            self.records,
            effects,
            clock,
            operation_timeout_seconds,
            hand_off=self._hand_off,
            handoff_after_misunderstandings=handoff_after_misunderstandings,
            quota=operation_quota,
            quota_usage=self._quota_usage,
        )

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if is_operation_event(activity):
            # Never create state for an event: its conversation may be gone (expired, deleted by TTL).
            record = stored_record(self._conversation_state.get(turn_context))
            await self._on_operation_event(turn_context, record or new_record())
            return
        is_status = activity.type == ActivityTypes.event and activity.name == STATUS_EVENT
        if is_status and not self._verify_status(turn_context):
            return  # refused before anything: no state touched, no profile loaded, nothing sent
        record = await load_record(self.records, turn_context)
        if already_handled(record, activity):
            logger.info(
                "activity %s of conversation %s was already handled; ignoring the redelivery",
                activity.id,
                activity.conversation.id,
            )
            return
        now = self._clock()
        if is_expired(record, self._expire_after_seconds, now):
            pending = record.get("pendingOperation")
            record = start_over(self._conversation_state.get(turn_context))
            notice = timeout_notice_once(pending) if pending else None
            if notice:
                await turn_context.send_activity(notice)
            await turn_context.send_activity(WELCOME_BACK_TEXT)
        remember_activity(record, activity, now, self._model_json)
        if activity.type == ActivityTypes.message and record["reference"] is not None:
            await self._subscriptions.remember(record["reference"])  # never raises
        if timed_out(record, now):
            await self._fail_back_timed_out(turn_context, record)
        await super().on_turn(turn_context)

    async def _on_operation_event(self, turn_context: TurnContext, record: ConversationRecord) -> None:
        """A verified result or progress event, continued into the user's conversation."""
        value = turn_context.activity.value
        refusal = operation_event_refusal(value, record)
        if refusal is not None:
            # Before anything is sent: a reply to a carried address would take the bot's outbound token there.
            logger.warning(
                "refused %s for operation %s in conversation %s: %s",
                turn_context.activity.name,
                value.get("operationId"),
                turn_context.activity.conversation.id,
                refusal,
            )
            return
        pending = record["pendingOperation"]
        if pending is None:  # refused just above; this tells the type checker too
            return
        if turn_context.activity.name == PROGRESS_EVENT:
            if progress_message_due(pending, self._clock(), self._progress_messages, self._progress_gap):
                await turn_context.send_activity(progress_text(pending, value.get("percent")))
            else:
                await turn_context.send_activity(Activity(type=ActivityTypes.typing))
            return
        record["lastAccessAt"] = self._clock()
        if active_handoff(record):
            # No dialogs run while a person has the conversation, but the result is still told; the
            # dialog that waited for it restarts when the handoff ends.
            record["pendingOperation"] = None
            self._effects.reply_durably(turn_context, result_reply(pending["name"], value))
            return
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if not any(member.id != bot_id for member in members_added):
            return
        name = display_name(await get_profile(self.profiles, turn_context))
        await turn_context.send_activity(WELCOME_BACK.format(name=name) if name else WELCOME)
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        record = await load_record(self.records, turn_context)
        handoff = active_handoff(record)
        if handoff:
            if handoff["state"] == WAITING:
                await turn_context.send_activity(STILL_WAITING_TEXT)
            return  # the person answers, through the channel's agent hub
        text = turn_context.activity.text
        if asks_for_a_person(text):
            await self._hand_off(turn_context, USER_ASKED)
            return
        if await self._notification_command(turn_context, text or ""):
            await self._ask_again(turn_context)  # the answer expected before is still expected: its buttons too
            return
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def _ask_again(self, turn_context: TurnContext) -> None:
        """Repeat the question the dialog is waiting on (the menu with its buttons, say), if any."""
        dialogs = DialogSet(self._dialog_state)
        dialogs.add(self._dialog)
        context = await dialogs.create_context(turn_context)
        if context.active_dialog is not None:
            await context.reprompt_dialog()

    async def on_event_activity(self, turn_context: TurnContext) -> None:
        if turn_context.activity.name == STATUS_EVENT:
            await self._on_handoff_status(turn_context)

    # --- human handoff (bot_logic/handoff.py) ---------------------------------------------

    async def _hand_off(self, turn_context: TurnContext, reason: str) -> None:
        """Ask the channel for a person, with the conversation's transcript, and tell the user."""
        activity = turn_context.activity
        record = await load_record(self.records, turn_context)
        handoff_id = start_handoff(record, reason, self._clock(), self._handoff_timeout)
        transcript = await self._transcripts.transcript(activity)
        name = display_name(await get_profile(self.profiles, turn_context))
        handoff_context = {
            "reason": reason,
            "userName": name,
            "conversationId": activity.conversation.id,
            "handoffId": handoff_id,  # the hub's statuses must name it (and sign it)
        }
        await turn_context.send_activity(REQUESTED_TEXT)
        await turn_context.send_activity(initiation_event(activity, handoff_context, transcript))

    def _verify_status(self, turn_context: TurnContext) -> bool:
        """Whether the hub signed this handoff.status for the conversation's active handoff (the rule:
        bot_logic/handoff.verified_status); the verified status waits in the turn state."""
        activity = turn_context.activity
        turn_context.turn_state.pop(VERIFIED_STATUS_KEY, None)  # an earlier attempt's (the unit of work re-runs)
        record = stored_record(self._conversation_state.get(turn_context)) or new_record()
        status, reason = verified_status(
            activity.value, activity.conversation.id, record, self._handoff_signing_key, self._clock()
        )
        if status is None:
            # Ids only: the value may be anyone's text.
            logger.warning("refused handoff.status in conversation %s: %s", activity.conversation.id, reason)
            return False
        handoff = active_handoff(record)
        assert handoff is not None  # verified_status refuses a status when none is active
        turn_context.turn_state[VERIFIED_STATUS_KEY] = (status, handoff["id"])
        return True

    async def _on_handoff_status(self, turn_context: TurnContext) -> None:
        verified = cast("tuple[HandoffStatus, str] | None", turn_context.turn_state.get(VERIFIED_STATUS_KEY))
        if verified is None:
            return
        status, handoff_id = verified
        record = await load_record(self.records, turn_context)
        handoff = active_handoff(record)
        if handoff is None or handoff.get("id") != handoff_id:
            return  # this very turn failed the handoff back (its deadline had passed)
        await self._as_conversation_user(turn_context, record)
        if status.state == ACCEPTED:
            agent = status.agent_name or "A person"
            handoff["state"], handoff["agent"] = ACCEPTED, agent
            await turn_context.send_activity(ACCEPTED_TEXT.format(agent=agent))
        elif status.state == FAILED:
            end_handoff(record)
            await turn_context.send_activity(FAILED_TEXT.format(reason=status.message or "the agents are unavailable"))
            await self._resume_after_handoff(turn_context, record)
        elif status.state == COMPLETED:
            end_handoff(record)
            await turn_context.send_activity(COMPLETED_TEXT)
            await self._resume_after_handoff(turn_context, record)

    async def _as_conversation_user(self, turn_context: TurnContext, record: ConversationRecord) -> None:
        """A handoff.status event comes from the channel on an agent's behalf, but the dialog it resumes
        is the user's: their profile (user state is keyed by the sender) and replies addressed to them."""
        user = (record.get("reference") or {}).get("user")
        sender = turn_context.activity.from_property
        if not user or (sender is not None and sender.id == user.get("id")):
            return
        turn_context.activity.from_property = ChannelAccount().deserialize(user)
        await self._user_state.load(turn_context, force=True)

    async def _fail_back_timed_out(self, turn_context: TurnContext, record: ConversationRecord) -> None:
        """A waiting handoff past its deadline, found by a turn before the sweeper: withdraw it."""
        text, restart_dialog = fail_back_timed_out(record, self._handoff_timeout)
        await turn_context.send_activity(text)
        await turn_context.send_activity(status_event(turn_context.activity.conversation, FAILED, TIMED_OUT_MESSAGE))
        if restart_dialog:
            await self._dialog_state.delete(turn_context)

    async def _resume_after_handoff(self, turn_context: TurnContext, record: ConversationRecord) -> None:
        """Back to the bot: restart the dialog, unless it still waits for a running operation."""
        pending = record.get("pendingOperation")
        if pending:
            await turn_context.send_activity(
                f"I'm still running the {pending['name']}; I'll tell you here when it's done."
            )
            return
        await self._dialog_state.delete(turn_context)
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    # --- notifications from outside events --------------------------------------------------

    async def _notification_command(self, turn_context: TurnContext, text: str) -> bool:
        """ "notify me about <topic>", "stop notifications" and "start notifications"; False for anything else."""
        command = text.strip()
        subscribe = NOTIFY_ME.match(command)
        stop = STOP_NOTIFICATIONS.match(command)
        start = START_NOTIFICATIONS.match(command)
        if not subscribe and not stop and not start:
            return False
        reference = TurnContext.get_conversation_reference(turn_context.activity).serialize()
        try:
            # Bounded: the store's own retries must not outlast the channel's 15 s for the turn.
            async with asyncio.timeout(SUBSCRIPTION_TIMEOUT_SECONDS):
                if start:
                    reply = await self._start_notifications(reference)
                else:
                    reply = await self._change_subscriptions(reference, subscribe)
        except ValueError as error:  # the port's refusal (a topic too long, too many topics): say why
            reply = f"Sorry, I can't do that: {error}."
        except Exception:
            logger.warning("notification subscriptions unavailable", exc_info=True)
            reply = "Sorry, I couldn't change your notifications just now. Please try again in a minute."
        await turn_context.send_activity(reply)
        return True

    async def _change_subscriptions(self, reference: dict[str, Any], subscribe: re.Match[str] | None) -> str:
        if subscribe is None:
            # Everything stops: the topics, and notices sent to the user directly (by user id or conversation).
            removed = await self._subscriptions.stop_notifications(reference)
            return STOPPED_TEXT.format(topics=f" (topics: {', '.join(removed)})" if removed else "")
        topic = normalise_topic(" ".join(subscribe.group("topic").split()))  # InvalidTopic: a ValueError
        topics = await self._subscriptions.subscribe(reference, topic)
        return (
            f"OK: I'll tell you here about “{topic}”. Your topics: {', '.join(topics)}. "
            "Say 'stop notifications' to stop. (An outside system can also notify you alone: "
            f"your user id is “{reference['user']['id']}”.)"
        )

    async def _start_notifications(self, reference: dict[str, Any]) -> str:
        were_off = await self._subscriptions.start_notifications(reference)
        return STARTED_TEXT if were_off else ALREADY_STARTED_TEXT


def _refuse_event(activity: Activity, why: str) -> None:
    """Log a refused operation event (ids only: its name, its operation's id, why)."""
    operation_id = activity.value.get("operationId") if isinstance(activity.value, dict) else None
    logger.warning("refused %s for operation %s: %s", activity.name, operation_id, why)
