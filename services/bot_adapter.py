"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (BotFrameworkAuthenticationFactory,
as botbuilder-integration-aiohttp's CloudAdapter does). While a turn's state is not
yet committed, its outgoing activities are held in the turn's outbox instead of sent.
"""

from __future__ import annotations

from typing import Any

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
    return BotFrameworkAuthenticationFactory.create(credential_factory=_CachedCredentials(credentials))


class _CachedCredentials(ServiceClientCredentialsFactory):
    """Reuses the bot's outbound credentials across turns.

    The SDK builds new MicrosoftAppCredentials (a new MSAL client, with blocking tenant discovery
    and token requests) on every turn; one per (app, scope) keeps MSAL's token cache warm.
    """

    def __init__(self, inner: ServiceClientCredentialsFactory) -> None:
        self._inner = inner
        self._cache: dict[tuple[str, str, str, bool], Any] = {}

    async def is_valid_app_id(self, app_id: str) -> bool:
        return await self._inner.is_valid_app_id(app_id)

    async def is_authentication_disabled(self) -> bool:
        return await self._inner.is_authentication_disabled()

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Any:
        key = (app_id, oauth_scope, login_endpoint, validate_authority)
        if key not in self._cache:
            self._cache[key] = await self._inner.create_credentials(
                app_id, oauth_scope, login_endpoint, validate_authority
            )
        return self._cache[key]


class FunctionsBotAdapter(CloudAdapterBase):
    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        outbox = outbox_of(context)
        if outbox is not None and outbox.holding:
            return outbox.hold(activities)
        return await super().send_activities(context, activities)
