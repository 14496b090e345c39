"""Queue triggers: poll Azure Storage queues (Azurite) with the storage extension's rules."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as WorkerQueueMessage
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from localdev.functions_host.hostjson import QueueOptions
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invocation import Invoker

log = logging.getLogger("localdev.functions_host")

# The extension's shortest polling interval; an empty queue doubles it up to maxPollingInterval.
MIN_POLLING_INTERVAL = 0.1
# The host receives messages invisible for 10 minutes and renews halfway while the function runs.
DEFAULT_MESSAGE_LEASE = 600
# At stop, how long an abandoned invocation's message may take to be released.
RELEASE_TIMEOUT = 3.0
POISON_SUFFIX = "-poison"


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`, or None where the extension has no poison queue (QueueListenerFactory): for a
    queue that is itself a poison queue, or whose name would grow past 63 characters."""
    if queue_name.endswith(POISON_SUFFIX) or len(queue_name) + len(POISON_SUFFIX) > 63:
        return None
    return queue_name + POISON_SUFFIX


class UndecodableMessage(Exception):
    pass


def decode_body(raw: str, encoding: str) -> bytes:
    if encoding == "none":
        return raw.encode("utf-8")
    # .NET's Convert.FromBase64String ignores whitespace but is otherwise strict.
    compact = "".join(raw.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UndecodableMessage(f"the message is not valid base64 ({error})") from error


def to_function_message(message: QueueMessage, body: bytes, pop_receipt: str) -> WorkerQueueMessage:
    # The worker builds azure.functions.queue.QueueMessage (a func.QueueMessage subclass) because
    # func.QueueMessage itself has no dequeue_count/time arguments; do the same.
    return WorkerQueueMessage(
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=pop_receipt,
    )


@dataclass
class _Lease:
    """The message's current pop receipt: each visibility update returns a new one."""

    message: QueueMessage
    pop_receipt: str


class QueueListener:
    def __init__(
        self,
        spec: FunctionSpec,
        queue: QueueClient,
        poison_queue: QueueClient | None,
        options: QueueOptions,
        invoker: Invoker,
        message_lease: int = DEFAULT_MESSAGE_LEASE,
    ) -> None:
        self.spec = spec
        self.queue = queue
        self.poison_queue = poison_queue
        self.options = options
        self._invoker = invoker
        self._lease_seconds = max(1, int(message_lease))
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        # Like the extension's listener: known to exist once seen, checked again after any error.
        self._queue_exists = False
        self._reported_missing = False

    @property
    def queue_name(self) -> str:
        return self.queue.queue_name

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name=f"queue-poll-{self.queue_name}")

    async def stop(self, timeout: float) -> None:
        """Stop polling, then give running invocations up to `timeout` to finish.

        An invocation still running then is abandoned and its message released, as the host does
        when the Python worker dies under it (Ctrl-C reaches the worker too).
        """
        self._stopping.set()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=RELEASE_TIMEOUT)

    async def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            if not await self._exists():
                # The trigger never creates its queue (the storage extension only checks that it
                # exists); it backs off as for an empty queue until someone creates it.
                await self._sleep(delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, self.options.max_polling_interval)
                continue
            # newBatchThreshold: fetch again only when this few messages are still being processed.
            while len(self._tasks) > self.options.new_batch_threshold:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            try:
                messages = [
                    message
                    async for message in self.queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=self._lease_seconds,
                    )
                ]
            except AzureError as error:
                if not isinstance(error, ResourceNotFoundError):
                    log.warning("Polling queue '%s' failed: %s", self.queue_name, error)
                self._queue_exists = False  # deleted meanwhile, perhaps: check again
                messages = []
            if messages:
                delay = MIN_POLLING_INTERVAL
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
                continue
            # Randomized exponential back-off, like the extension's RandomizedExponentialBackoffStrategy.
            await self._sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 2, self.options.max_polling_interval)

    async def _exists(self) -> bool:
        if self._queue_exists:
            return True
        try:
            await self.queue.get_queue_properties()
        except ResourceNotFoundError:
            if not self._reported_missing:
                self._reported_missing = True
                log.warning(
                    "Queue '%s' does not exist. The queue trigger polls it but does not create it "
                    "(neither does the real host): create it, or send with a client that creates it.",
                    self.queue_name,
                )
            return False
        except AzureError as error:
            log.warning("Queue '%s' is unreachable, retrying: %s", self.queue_name, error)
            return False
        if self._reported_missing:
            log.info("Queue '%s' now exists.", self.queue_name)
        self._queue_exists = True
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("Processing a message from '%s' failed", self.queue_name, exc_info=task.exception())

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _process(self, message: QueueMessage) -> None:
        lease = _Lease(message, str(message.pop_receipt))
        try:
            body = decode_body(str(message.content or ""), self.options.message_encoding)
        except UndecodableMessage as error:
            # What the storage extension does (QueueServiceClientProvider's MessageDecodingFailed
            # handler): copy the raw text to the poison queue at once, whatever the dequeue count.
            log.warning(
                "Message decoding has failed! Check MessageEncoding settings. MessageId=%s (queue '%s', "
                "encoding %s: %s).",
                message.id,
                self.queue_name,
                self.options.message_encoding,
                error,
            )
            await self._poison(lease)
            return
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            # Delivered too often already (e.g. the host died mid-message): poison without invoking.
            await self._poison(lease)
            return
        renewer = asyncio.create_task(self._renew(lease))
        try:
            result = await self._invoker.invoke(
                self.spec,
                to_function_message(message, body, lease.pop_receipt),
                f"New queue message detected on '{self.queue_name}'.",
            )
        except asyncio.CancelledError:
            await self._failed(lease)  # abandoned at stop: a failed attempt
            raise
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        if result.succeeded:
            await self._delete(lease)
        else:
            await self._failed(lease)

    async def _failed(self, lease: _Lease) -> None:
        """QueueProcessor.CompleteProcessingMessageAsync for a failure."""
        if self.poison_queue is None:
            # No poison queue: the message stays invisible for the rest of its lease (no fast loop).
            return
        if (lease.message.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._poison(lease)
        else:
            await self._release(lease)

    async def _renew(self, lease: _Lease) -> None:
        """Keep the message invisible while the function runs, renewing at half the lease.

        As UpdateQueueMessageVisibilityCommand: a message that is gone or whose pop receipt no longer
        matches is lost for good (stop trying); any other failure is retried sooner, before the lease ends.
        """
        delay = self._lease_seconds / 2
        while True:
            await asyncio.sleep(delay)
            try:
                updated = await self.queue.update_message(
                    lease.message.id, lease.pop_receipt, visibility_timeout=self._lease_seconds
                )
            except AzureError as error:
                lost = isinstance(error, ResourceNotFoundError) or getattr(error, "status_code", None) == 400
                log.warning("Renewing message '%s' on '%s' failed: %s", lease.message.id, self.queue_name, error)
                if lost:
                    return
                delay = max(delay / 2, 0.5)
                continue
            lease.pop_receipt = str(updated.pop_receipt)
            delay = self._lease_seconds / 2

    async def _release(self, lease: _Lease) -> None:
        """Failure below maxDequeueCount: visible again after host.json visibilityTimeout."""
        try:
            await self.queue.update_message(
                lease.message.id, lease.pop_receipt, visibility_timeout=round(self.options.visibility_timeout)
            )
        except AzureError as error:
            log.warning("Releasing message '%s' on '%s' failed: %s", lease.message.id, self.queue_name, error)

    async def _delete(self, lease: _Lease) -> None:
        try:
            await self.queue.delete_message(lease.message.id, lease.pop_receipt)
        except ResourceNotFoundError:
            log.debug("Message '%s' was already gone from '%s'", lease.message.id, self.queue_name)

    async def _poison(self, lease: _Lease) -> None:
        """QueueProcessor.HandlePoisonMessageAsync: copy to the poison queue (created if need be),
        delete the original; without a poison queue, nothing (it reappears after its lease)."""
        if self.poison_queue is None:
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison_queue.queue_name,
        )
        # The raw text is copied, so the poison message is encoded exactly like the original.
        try:
            await self.poison_queue.send_message(lease.message.content or "")
        except ResourceNotFoundError:
            await _create_if_missing(self.poison_queue)
            await self.poison_queue.send_message(lease.message.content or "")
        await self._delete(lease)


async def _create_if_missing(queue: QueueClient) -> None:
    try:
        await queue.create_queue()
    except ResourceExistsError:
        pass
