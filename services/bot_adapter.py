"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (BotFrameworkAuthenticationFactory,
as botbuilder-integration-aiohttp's CloudAdapter does). While a turn's state is not
yet committed, its outgoing activities are held in the turn's outbox instead of sent.
"""

from __future__ import annotations

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity, ResourceResponse
from botframework.connector.auth import (
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
    ManagedIdentityServiceClientCredentialsFactory,
    PasswordServiceClientCredentialFactory,
    ServiceClientCredentialsFactory,
)

from services.settings import Settings
from services.unit_of_work import outbox_of


def create_authentication(settings: Settings) -> BotFrameworkAuthentication:
    credentials: ServiceClientCredentialsFactory
    if settings.microsoft_app_type == "UserAssignedMSI":
        credentials = ManagedIdentityServiceClientCredentialsFactory(settings.microsoft_app_id)
    else:
        tenant = settings.microsoft_app_tenant_id if settings.microsoft_app_type == "SingleTenant" else None
        credentials = PasswordServiceClientCredentialFactory(
            settings.microsoft_app_id, settings.microsoft_app_password, tenant
        )
    return BotFrameworkAuthenticationFactory.create(credential_factory=credentials)


class FunctionsBotAdapter(CloudAdapterBase):
    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        outbox = outbox_of(context)
        if outbox is not None and outbox.holding:
            return outbox.hold(activities)
        return await super().send_activities(context, activities)
