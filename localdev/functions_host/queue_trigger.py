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
STARTUP_CREATE_TIMEOUT = 5.0


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
        poison_queue: QueueClient,
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
        self._queue_ready = False

    @property
    def queue_name(self) -> str:
        return self.queue.queue_name

    async def start(self) -> None:
        # Create the queue before the host reports ready, but an unreachable account must not
        # block startup for long: the poll loop keeps trying.
        try:
            self._queue_ready = await asyncio.wait_for(self._ensure_queue(), STARTUP_CREATE_TIMEOUT)
        except TimeoutError:
            log.warning("Queue '%s' is not reachable yet; polling will keep trying", self.queue_name)
        self._poller = asyncio.create_task(self._poll(), name=f"queue-poll-{self.queue_name}")

    async def stop(self, timeout: float) -> None:
        """Stop polling, then give running invocations up to `timeout` to finish."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:  # abandoned: the message reappears after its visibility timeout
                task.cancel()

    async def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self._queue_ready and not await self._ensure_queue():
            await self._sleep(delay)
            delay = min(delay * 2, self.options.max_polling_interval)
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
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
            except ResourceNotFoundError:  # deleted while we run: recreate, as at startup
                await self._ensure_queue()
                messages = []
            except AzureError as error:
                log.warning("Polling queue '%s' failed: %s", self.queue_name, error)
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

    async def _ensure_queue(self) -> bool:
        try:
            await _create_if_missing(self.queue)
        except AzureError as error:
            log.warning("Queue '%s' is unreachable, retrying: %s", self.queue_name, error)
            return False
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
                "Message '%s' from queue '%s' cannot be decoded as %s: %s. Moving it to queue '%s'.",
                message.id,
                self.queue_name,
                self.options.message_encoding,
                error,
                self.poison_queue.queue_name,
            )
            await self._move_to_poison(lease)
            return
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            # Delivered too often already (e.g. the host died mid-message): poison without invoking.
            await self._poison_after_failures(lease)
            return
        renewer = asyncio.create_task(self._renew(lease))
        try:
            result = await self._invoker.invoke(
                self.spec,
                to_function_message(message, body, lease.pop_receipt),
                f"New queue message detected on '{self.queue_name}'.",
            )
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        if result.succeeded:
            await self._delete(lease)
        elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._poison_after_failures(lease)
        else:
            await self._release(lease)

    async def _renew(self, lease: _Lease) -> None:
        """Keep the message invisible while the function runs, renewing at half the lease."""
        while True:
            await asyncio.sleep(self._lease_seconds / 2)
            try:
                updated = await self.queue.update_message(
                    lease.message.id, lease.pop_receipt, visibility_timeout=self._lease_seconds
                )
            except AzureError as error:
                log.warning("Renewing message '%s' on '%s' failed: %s", lease.message.id, self.queue_name, error)
                return
            lease.pop_receipt = str(updated.pop_receipt)

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

    async def _poison_after_failures(self, lease: _Lease) -> None:
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.options.max_dequeue_count,
            self.poison_queue.queue_name,
        )
        await self._move_to_poison(lease)

    async def _move_to_poison(self, lease: _Lease) -> None:
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
