"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (BotFrameworkAuthenticationFactory,
as botbuilder-integration-aiohttp's CloudAdapter does). While a turn's state is not
yet committed, its outgoing activities are held in the turn's outbox (HoldsRepliesUntilCommit).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity, ConversationReference
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
    ClaimsIdentity,
    ConnectorFactory,
    ManagedIdentityServiceClientCredentialsFactory,
    PasswordServiceClientCredentialFactory,
    ServiceClientCredentialsFactory,
)

from services.settings import Settings
from services.unit_of_work import HoldsRepliesUntilCommit


def create_authentication(settings: Settings) -> BotFrameworkAuthentication:
    credentials: ServiceClientCredentialsFactory
    if settings.microsoft_app_type == "UserAssignedMSI":
        credentials = ManagedIdentityServiceClientCredentialsFactory(settings.microsoft_app_id)
    else:
        tenant = settings.microsoft_app_tenant_id if settings.microsoft_app_type == "SingleTenant" else None
        credentials = PasswordServiceClientCredentialFactory(
            settings.microsoft_app_id, settings.microsoft_app_password, tenant
        )
    return _ReusedConnectors(
        BotFrameworkAuthenticationFactory.create(credential_factory=_CachedCredentials(credentials))
    )


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


class FunctionsBotAdapter(HoldsRepliesUntilCommit, CloudAdapterBase):
    def __init__(self, authentication: BotFrameworkAuthentication, bot_app_id: str) -> None:
        super().__init__(authentication)
        self.bot_app_id = bot_app_id

    async def tell(self, reference: dict[str, Any], texts: list[str]) -> None:
        """Send texts proactively into the conversation a stored reference names (no turn, no state)."""

        async def send(context: TurnContext) -> None:
            for text in texts:
                await context.send_activity(text)

        await self.continue_conversation(ConversationReference().deserialize(reference), send, self.bot_app_id)


class _ReusedConnectors(BotFrameworkAuthentication):
    """The SDK's authentication, but Connector clients are reused across turns.

    The SDK builds a new ConnectorClient (HTTP session, TCP connection) on every turn; reusing
    one per (app, serviceUrl, audience) saves about a sixth of a turn's CPU (see bench/).
    Bounded, since in local mode any serviceUrl is accepted.
    """

    MAX_CLIENTS = 32

    def __init__(self, inner: BotFrameworkAuthentication) -> None:
        self._inner = inner
        self._clients: OrderedDict[tuple[str, str, str | None], ConnectorClient] = OrderedDict()

    def _wrap(self, factory: ConnectorFactory | None, claims: ClaimsIdentity | None) -> ConnectorFactory | None:
        if factory is None:
            return None
        app_id = ""
        if claims is not None:
            app_id = (
                claims.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
                or claims.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
                or ""
            )
        return _ReusingFactory(factory, self._clients, app_id, self.MAX_CLIENTS)

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        result = await self._inner.authenticate_request(activity, auth_header)
        result.connector_factory = self._wrap(result.connector_factory, result.claims_identity)
        return result

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str) -> Any:
        result = await self._inner.authenticate_streaming_request(auth_header, channel_id_header)
        result.connector_factory = self._wrap(result.connector_factory, result.claims_identity)
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        factory = self._wrap(self._inner.create_connector_factory(claims_identity), claims_identity)
        assert factory is not None
        return factory

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> Any:
        return await self._inner.create_user_token_client(claims_identity)

    def create_bot_framework_client(self) -> Any:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)


@dataclass
class _ReusingFactory(ConnectorFactory):
    inner: ConnectorFactory
    clients: OrderedDict[tuple[str, str, str | None], ConnectorClient]  # shared by every factory
    app_id: str
    limit: int

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        key = (self.app_id, service_url, audience)
        client = self.clients.get(key)
        if client is None:
            client = await self.inner.create(service_url, audience)
            self.clients[key] = client
            if len(self.clients) > self.limit:
                self.clients.popitem(last=False)
        self.clients.move_to_end(key)
        return client
