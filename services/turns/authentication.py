"""Bot Framework authentication for the adapter: the SDK's own token validation, made safe to run
inside the Functions worker's event loop, with its failures told apart.

* Inbound tokens are validated by botframework-connector 4.17, configured for the public cloud
  (BotFrameworkAuthenticationFactory's parameterized form, which lets the OpenID metadata URLs be
  injected: tests serve their own keys, production uses Microsoft's).
* The SDK fetches the signing keys with a blocking `requests.get` and no timeout, inside the event
  loop, and raises the same exceptions for "the key service is down" as for "the token is forged".
  Its key cache (`JwtTokenExtractor.metadataCache`, keyed by metadata URL) is the seam: each URL's
  entry is replaced by an OpenIdKeySource, which fetches with aiohttp under a time limit, keeps
  serving the keys it has when a refresh fails, and raises KeySourceUnavailable when it has none.
* So a request either authenticates, or fails with TokenRejected (the caller's problem: 401), or
  with KeySourceUnavailable (ours, for now: 503 and try again).
* Outbound, the SDK's credentials and Connector clients are reused across turns (see the classes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import jwt
from botbuilder.schema import Activity, CallerIdConstants
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
    ClaimsIdentity,
    ConnectorFactory,
    JwtTokenExtractor,
    ManagedIdentityServiceClientCredentialsFactory,
    PasswordServiceClientCredentialFactory,
    ServiceClientCredentialsFactory,
)
from jwt.algorithms import RSAAlgorithm

from services.channel.activity_json import use_plain_bodies
from services.channel.connector_sender import ConnectorSessions
from services.settings import Settings, is_secure_address
from services.unavailable import ServiceUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Microsoft's key sets are a few kilobytes; a key source answering megabytes is answering garbage.
MAX_DOCUMENT_BYTES = 1024 * 1024
# As the SDK does: keys older than a day are refreshed, and a token signed with a key not in the set
# triggers a refresh at most once an hour (so forged key ids cannot make the bot hammer the source).
REFRESH_AFTER_SECONDS = 24 * 3600
UNKNOWN_KEY_REFRESH_SECONDS = 3600


class KeySourceUnavailable(ServiceUnavailable):
    """The keys that sign Bot Framework tokens cannot be had now: no token can be judged either way."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # whole seconds until the source is asked again


class TokenRejected(PermissionError):
    """The request's token is missing, malformed, or fails the SDK's validation."""


@dataclass(frozen=True)
class KeySources:
    """Where the keys that sign inbound tokens are published, and how patiently they are fetched."""

    channel_metadata_url: str = AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
    # Tokens Microsoft Entra issues directly (a calling bot's, the Bot Framework Emulator's) use these.
    emulator_metadata_url: str = AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
    # The whole fetch (metadata and key set) must finish within this: the Bot Service waits ~15 s a turn.
    timeout_seconds: float = 5.0
    # After a failed fetch, requests needing it fail at once for this long instead of each waiting.
    retry_after_seconds: int = 10
    clock: Callable[[], float] = time.monotonic


PUBLIC_CLOUD = KeySources()


# --- the signing keys -----------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """What JwtTokenExtractor reads of a key (the SDK's _OpenIdConfig)."""

    public_key: Any
    endorsements: list[str]  # the channels the key may sign for; empty: any


class _KeySetError(ValueError):
    """A key source answered something that is not an OpenID configuration or a key set."""


class OpenIdKeySource:
    """Stands in for the SDK's _OpenIdMetadata in its key cache: `await get(key_id)` -> SigningKey.

    Fetches without blocking the event loop and within `timeout_seconds`. One fetch at a time: the
    requests that need it meanwhile share its outcome (and a request that gives up does not cancel
    it for the others). After a failure, no fetch for `retry_after_seconds`: requests that need keys
    fail at once, and keys already fetched keep serving.
    """

    def __init__(self, metadata_url: str, options: KeySources) -> None:
        if not is_secure_address(metadata_url):
            raise ValueError(f"OpenID metadata must come over https (or from this machine), not {metadata_url}")
        self.metadata_url = metadata_url
        self._options = options
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at = -math.inf  # clock time of the last successful fetch
        self._failed_at: float | None = None  # clock time of the last fetch, if it failed
        self._fetching: asyncio.Task[None] | None = None

    async def get(self, key_id: str | None) -> SigningKey:
        if not key_id:
            # Bot Framework tokens always name their key; refusing here spares a fetch for junk.
            raise TokenRejected("the token's header names no signing key ('kid')")
        if self._age() > REFRESH_AFTER_SECONDS:
            if not self._keys:
                if not await self._refresh():
                    raise self._unavailable()
            elif not self._is_fetching():  # stale keys still serve; only one request waits for new ones
                await self._refresh()
        key = self._keys.get(key_id)
        if key is None and self._age() > UNKNOWN_KEY_REFRESH_SECONDS:
            # Perhaps the keys rolled over; if the source cannot say, the token cannot be judged.
            if not await self._refresh():
                raise self._unavailable()
            key = self._keys.get(key_id)
        if key is None:
            raise TokenRejected(f"the token is signed with key {key_id[:64]!r}, which is not a published key")
        return key

    def _age(self) -> float:
        return self._options.clock() - self._fetched_at

    def _is_fetching(self) -> bool:
        return self._fetching is not None and not self._fetching.done()

    def _backing_off(self) -> bool:
        if self._failed_at is None:
            return False
        return self._options.clock() - self._failed_at < self._options.retry_after_seconds

    def _unavailable(self) -> KeySourceUnavailable:
        failed_at = self._options.clock() if self._failed_at is None else self._failed_at
        remaining = self._options.retry_after_seconds - (self._options.clock() - failed_at)
        return KeySourceUnavailable(
            f"the signing keys at {self.metadata_url} cannot be fetched", max(1, math.ceil(remaining))
        )

    async def _refresh(self) -> bool:
        """Fetch the keys, or join the fetch under way, unless backing off; True if the keys are fresh."""
        if not self._is_fetching():
            if self._backing_off():
                return False
            self._fetching = asyncio.ensure_future(self._attempt())
        assert self._fetching is not None
        await asyncio.shield(self._fetching)
        return self._failed_at is None and self._age() <= REFRESH_AFTER_SECONDS

    async def _attempt(self) -> None:
        try:
            keys = await asyncio.wait_for(self._fetch(), self._options.timeout_seconds)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as failure:
            self._failed_at = self._options.clock()
            logger.warning(
                "cannot fetch the Bot Framework signing keys from %s (%s: %s); keeping %d cached key(s)",
                self.metadata_url,
                type(failure).__name__,
                failure,
                len(self._keys),
            )
        else:
            self._keys, self._fetched_at, self._failed_at = keys, self._options.clock(), None

    async def _fetch(self) -> dict[str, SigningKey]:
        timeout = aiohttp.ClientTimeout(total=self._options.timeout_seconds)
        # trust_env: honour HTTPS_PROXY as the SDK's requests-based fetch did.
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            metadata = await _get_json(session, self.metadata_url)
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise _KeySetError("the OpenID configuration has no jwks_uri")
            if not is_secure_address(jwks_uri):  # keys fetched in the clear could be swapped on the way
                raise _KeySetError("the OpenID configuration's jwks_uri is not https")
            return _signing_keys(await _get_json(session, jwks_uri))


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise _KeySetError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as failure:
        raise _KeySetError(f"{url} did not answer JSON") from failure


def _signing_keys(jwks: Any) -> dict[str, SigningKey]:
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise _KeySetError("the key set has no 'keys' list")
    keys = {entry["kid"]: key for entry in entries if (key := _signing_key(entry)) is not None}
    if not keys:
        raise _KeySetError("the key set holds no usable RSA key")
    return keys


def _signing_key(entry: Any) -> SigningKey | None:
    """A key the SDK can check a signature with, or None for an entry it could not use."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    endorsements = entry.get("endorsements", [])
    if not isinstance(endorsements, list) or not all(isinstance(name, str) for name in endorsements):
        return None
    try:
        public_key = RSAAlgorithm.from_jwk(json.dumps(entry))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return SigningKey(public_key, endorsements)


def install_key_sources(sources: KeySources) -> None:
    """Put an OpenIdKeySource in the SDK's key cache for each metadata URL the SDK will ask for.

    The cache is the SDK's, process-wide, keyed by URL: the last configuration of a URL wins.
    """
    for url in {sources.channel_metadata_url, sources.emulator_metadata_url}:
        JwtTokenExtractor.metadataCache[url] = OpenIdKeySource(url, sources)


# --- the authentication the adapter uses ----------------------------------------------------


def credentials_from_settings(settings: Settings) -> ServiceClientCredentialsFactory:
    """The bot's identity: which app ids its inbound tokens may name, and its outbound credentials."""
    if settings.microsoft_app_type == "UserAssignedMSI":
        return ManagedIdentityServiceClientCredentialsFactory(settings.microsoft_app_id)
    tenant = settings.microsoft_app_tenant_id if settings.microsoft_app_type == "SingleTenant" else None
    # The SDK annotates tenant_id as str but treats None as "no tenant" (multi-tenant).
    return PasswordServiceClientCredentialFactory(settings.microsoft_app_id, settings.microsoft_app_password, tenant)  # type: ignore[arg-type]


def create_authentication(
    settings: Settings,
    key_sources: KeySources = PUBLIC_CLOUD,
    credentials: ServiceClientCredentialsFactory | None = None,
) -> ReusedConnectors:
    """The public cloud's Bot Framework authentication; tests pass their own key sources and credentials."""
    install_key_sources(key_sources)
    # The parameterized form, given the public cloud's constants (those the SDK's public-cloud form
    # uses), is the one that takes the metadata URLs as parameters rather than as process-wide state.
    sdk_authentication = BotFrameworkAuthenticationFactory.create(
        validate_authority=True,
        to_channel_from_bot_login_url=AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX,
        to_channel_from_bot_oauth_scope=AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
        to_bot_from_channel_token_issuer=AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER,
        oauth_url=AuthenticationConstants.OAUTH_URL,
        to_bot_from_channel_open_id_metadata_url=key_sources.channel_metadata_url,
        to_bot_from_emulator_open_id_metadata_url=key_sources.emulator_metadata_url,
        caller_id=CallerIdConstants.public_azure_channel,
        credential_factory=_CachedCredentials(credentials or credentials_from_settings(settings)),
    )
    return ReusedConnectors(sdk_authentication)


async def _validated(validation: Awaitable[T]) -> T:
    """Run one of the SDK's validations, telling a bad token from keys that cannot be had.

    The SDK signals a bad token with PermissionError, PyJWT's errors, bare Exception, IndexError,
    AttributeError...: anything but KeySourceUnavailable (raised by the key source) is a rejection.
    """
    try:
        return await validation
    except (KeySourceUnavailable, TokenRejected):
        raise
    except Exception as failure:
        raise TokenRejected(str(failure) or type(failure).__name__) from failure


def _require_expiry(claims: ClaimsIdentity | None) -> None:
    # PyJWT lets a token without "exp" live for ever, and the SDK does not ask for one; Bot Framework
    # and Entra tokens always carry it. Anonymous identities (authentication off) have no claims.
    if claims is not None and claims.authentication_type != AuthenticationConstants.ANONYMOUS_AUTH_TYPE:
        if "exp" not in (claims.claims or {}):
            raise TokenRejected("the token has no expiry ('exp')")


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


class ReusedConnectors(BotFrameworkAuthentication):
    """The SDK's authentication, with its failures classified and Connector clients reused across turns.

    The SDK builds a new ConnectorClient (HTTP session, TCP connection) on every turn; reusing
    one per (app, serviceUrl, audience) saves about a sixth of a turn's CPU (see bench/).
    Bounded, since in local mode any serviceUrl is accepted. The clients send over one aiohttp
    session (services/channel/connector_sender.py), which `close()` releases.
    """

    MAX_CLIENTS = 32

    def __init__(self, inner: BotFrameworkAuthentication) -> None:
        self._inner = inner
        self._clients: OrderedDict[tuple[str, str, str | None], ConnectorClient] = OrderedDict()
        self._user_token_clients: dict[str, Any] = {}  # by the app id the claims name
        self._sessions = ConnectorSessions()

    def _wrap(self, factory: ConnectorFactory | None, claims: ClaimsIdentity | None) -> ConnectorFactory | None:
        if factory is None:
            return None
        return _ReusingFactory(factory, self._clients, _app_id(claims), self.MAX_CLIENTS, self._sessions)

    async def close(self) -> None:
        await self._sessions.close()

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        # The parameterized SDK class treats only None, not "", as "no Authorization header".
        result = await _validated(self._inner.authenticate_request(activity, auth_header or None))  # type: ignore[arg-type]
        _require_expiry(result.claims_identity)
        result.connector_factory = self._wrap(result.connector_factory, result.claims_identity)  # type: ignore[assignment]
        return result

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str) -> Any:
        result = await _validated(
            self._inner.authenticate_streaming_request(auth_header or None, channel_id_header)  # type: ignore[arg-type]
        )
        _require_expiry(result.claims_identity)
        result.connector_factory = self._wrap(result.connector_factory, result.claims_identity)  # type: ignore[assignment]
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        factory = self._wrap(self._inner.create_connector_factory(claims_identity), claims_identity)
        assert factory is not None
        return factory

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> Any:
        # The SDK builds one on every turn (process_activity), though this bot never uses it, and
        # building one costs ~3 ms of CPU (msrest's retry configuration): one per app id is reused.
        app_id = _app_id(claims_identity)
        client = self._user_token_clients.get(app_id)
        if client is None:
            client = await self._inner.create_user_token_client(claims_identity)
            if len(self._user_token_clients) < self.MAX_CLIENTS:
                self._user_token_clients[app_id] = client
        return client

    def create_bot_framework_client(self) -> Any:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        claims = await _validated(self._inner.authenticate_channel_request(auth_header))
        _require_expiry(claims)
        return claims


def _app_id(claims: ClaimsIdentity | None) -> str:
    if claims is None:
        return ""
    return (
        claims.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
        or claims.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
        or ""
    )


@dataclass
class _ReusingFactory(ConnectorFactory):
    inner: ConnectorFactory
    clients: OrderedDict[tuple[str, str, str | None], ConnectorClient]  # shared by every factory
    app_id: str
    limit: int
    sessions: ConnectorSessions

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        key = (self.app_id, service_url, audience)
        client = self.clients.get(key)
        if client is None:
            client = await self.inner.create(service_url, audience)  # type: ignore[arg-type]  # None: the default
            use_plain_bodies(client)  # replies' request bodies without msrest's per-value dispatch
            self.sessions.send_over_aiohttp(client)  # not requests in a thread
            self.clients[key] = client
            if len(self.clients) > self.limit:
                self.clients.popitem(last=False)
        self.clients.move_to_end(key)
        return client
