"""App settings pointing at emulators a test or benchmark session started (not `make run`'s file)."""

from __future__ import annotations

import secrets

from localdev.emulators import Azurite, CosmosStandIn


def app_settings(azurite: Azurite, cosmos: CosmosStandIn, **overrides: str) -> dict[str, str]:
    """Values as local.settings.json would hold them; a fresh database and queue per call isolate runs."""
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "MicrosoftAppId": "",
        "MicrosoftAppPassword": "",
        "MicrosoftAppType": "MultiTenant",
        "ExpireAfterSeconds": "300",
        "CosmosDbEndpoint": cosmos.endpoint,
        "CosmosDbAuthKey": cosmos.key,
        "CosmosDbDatabaseId": f"test-{secrets.token_hex(4)}",
        "CosmosDbConversationStateContainerId": "conversation-state",
        "CosmosDbUserStateContainerId": "user-state",
        "CosmosDbTimeToLive": "3600",
        "OperationsQueueName": f"ops-{secrets.token_hex(4)}",
        "DirectLineEndpoint": "http://127.0.0.1:9/v3/directline",
        "DirectLineSecret": secrets.token_urlsafe(24),
        "OperationSigningKey": secrets.token_urlsafe(32),
        "HandoffSigningKey": secrets.token_urlsafe(32),
        "SweepSchedule": "*/5 * * * * *",
        "TranscriptTableName": f"transcripts{secrets.token_hex(4)}",
        "ExternalEventsQueueName": f"events-{secrets.token_hex(4)}",
    }
    values.update(overrides)
    return values
