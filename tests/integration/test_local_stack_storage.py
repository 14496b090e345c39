"""What the local stack sets up in Azurite for the app, as the template and `func start` expect."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from azure.storage.queue import QueueServiceClient

from localdev.app_settings import app_settings
from localdev.emulators import Azurite, CosmosStandIn, Emulators, start_azurite
from localdev.stack import create_queues

pytestmark = pytest.mark.emulators


def test_the_apps_queues_and_their_poison_queues_exist_before_the_host_starts(
    azurite: Azurite, cosmos: CosmosStandIn
) -> None:
    """Queue triggers never create their queues (neither does the real host): the stack does, as the
    template does in Azure, so the worker listens from the start and a first operation waits for nothing."""
    values = {**app_settings(azurite, cosmos), "OperationsQueueName": "ops-x1", "ExternalEventsQueueName": "ext-x1"}
    assert create_queues(values, Emulators(azurite, cosmos)) == ["ops-x1", "ext-x1", "ops-x1-poison", "ext-x1-poison"]
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        names = {queue.name for queue in service.list_queues()}
    assert {"ops-x1", "ext-x1", "ops-x1-poison", "ext-x1-poison"} <= names
    assert create_queues(values, Emulators(azurite, cosmos))  # again: they exist, no error


def test_queues_of_another_storage_account_are_left_alone(azurite: Azurite, cosmos: CosmosStandIn) -> None:
    values = {**app_settings(azurite, cosmos), "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=x"}
    assert create_queues(values, Emulators(azurite, cosmos)) == []


def test_func_start_gets_a_blob_endpoint_in_its_storage_connection() -> None:
    """The real host keeps timer status and singleton locks in blobs: `make run` with Core Tools starts
    Azurite's blob service too and names it in AzureWebJobsStorage."""
    with start_azurite(blobs=True) as azurite:
        assert f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/devstoreaccount1;" in azurite.connection_string
        try:  # unsigned, so refused: but by Azurite's blob service
            urllib.request.urlopen(f"http://127.0.0.1:{azurite.blob_port}/devstoreaccount1?comp=list", timeout=10)
        except urllib.error.HTTPError as error:
            assert error.headers["Server"].startswith("Azurite-Blob/")
        else:
            raise AssertionError("an unsigned request was accepted")
