"""A local stand-in for the Bot Framework token service and Microsoft Entra, for authentication tests.

It publishes an OpenID configuration and a key set (JWKS) over HTTP, as
https://login.botframework.com/v1/.well-known/openidconfiguration does, with an RSA key generated
at test time, and issues tokens signed with that key (or deliberately wrong ones). The bot's own
validation (botframework-connector's, through services/turns/authentication.py) fetches and checks them.

    entra = FakeEntra(); await entra.start()
    create_authentication(settings, entra.key_sources(), credentials=entra.bot_credentials(settings))
    auth = f"Bearer {entra.channel_token(app_id, service_url)}"
    await entra.fail_with("hang")  # or "refused", "status 500", "not JSON", ...: see OUTAGES

Outbound, a bot with an app id gets its Connector token from Entra through MSAL, which needs the
internet: bot_credentials() hands the adapter tokens signed here instead (the recording Connector
does not check them), while inbound app id checks stay the production ones.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import socket
import time
from typing import Any

import jwt
from aiohttp import web
from botframework.connector.auth import AuthenticationConstants, PasswordServiceClientCredentialFactory
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from msrest.authentication import Authentication, BasicTokenAuthentication

from services.settings import Settings
from services.turns.authentication import KeySources

CHANNEL_ISSUER = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
# Bot Framework keys name the channels they may sign for; the SDK checks the activity's channelId is one.
ENDORSEMENTS = ["directline", "webchat", "msteams", "emulator"]

OUTAGES = (
    "refused",  # nothing listens any more
    "hang",  # accepts the request and never answers
    "status 500",
    "not JSON",  # 200 with an HTML error page
    "no jwks_uri",  # an OpenID configuration without the key set's address
    "keys not a list",
    "no usable key",  # a key set whose only key is not an RSA key the SDK can use
    "too large",  # a key set of several megabytes
)


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """One RSA key per name for the test session (generating one takes a noticeable moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, key_id: str, endorsements: list[str]) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": key_id, "use": "sig", "alg": "RS256", "endorsements": endorsements}


class FakeEntra:
    """The OpenID configuration and key set on a local port; tokens signed with its key."""

    KEY_ID = "fake-entra-key-1"
    TEAMS_ONLY_KEY_ID = "fake-entra-key-teams"  # a published key endorsed for another channel only

    def __init__(self) -> None:
        self.key = rsa_key("published")
        self.teams_key = rsa_key("teams-only")
        self.outage: str | None = None
        self.metadata_requests = 0  # how often the bot asked for the OpenID configuration
        self._asked = asyncio.Condition()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()  # lets hanging requests go when the server stops

    # --- the server --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def channel_metadata_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    @property
    def emulator_metadata_url(self) -> str:
        return f"{self.base_url}/botframework.com/v2.0/.well-known/openid-configuration"

    def key_sources(self, **options: Any) -> KeySources:
        """Where the bot finds this server's keys; options: timeout_seconds, retry_after_seconds, clock."""
        return KeySources(self.channel_metadata_url, self.emulator_metadata_url, **options)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get("/botframework.com/v2.0/.well-known/openid-configuration", self._metadata)
        app.router.add_get("/keys", self._keys)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def fail_with(self, outage: str) -> None:
        """Break the key source in one of the OUTAGES ways."""
        assert outage in OUTAGES, outage
        self.outage = outage
        if outage == "refused":
            await self.stop()

    def restore(self) -> None:
        self.outage = None

    async def wait_for_metadata_requests(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._asked:
            await self._asked.wait_for(lambda: self.metadata_requests >= count)

    async def _metadata(self, request: web.Request) -> web.StreamResponse:
        async with self._asked:
            self.metadata_requests += 1
            self._asked.notify_all()
        broken = await self._broken(("hang", "status 500", "not JSON"))
        if broken is not None:
            return broken
        if self.outage == "no jwks_uri":
            return web.json_response({"issuer": CHANNEL_ISSUER})
        return web.json_response(
            {
                "issuer": CHANNEL_ISSUER,
                "jwks_uri": f"{self.base_url}/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        if self.outage == "keys not a list":
            return web.json_response({"keys": {"kid": self.KEY_ID}})
        if self.outage == "no usable key":
            return web.json_response({"keys": [{"kty": "oct", "kid": self.KEY_ID, "k": "c2VjcmV0"}]})
        if self.outage == "too large":
            return web.json_response({"keys": [public_jwk(self.key, f"k{n}", ENDORSEMENTS) for n in range(4000)]})
        return web.json_response(
            {
                "keys": [
                    public_jwk(self.key, self.KEY_ID, ENDORSEMENTS),
                    public_jwk(self.teams_key, self.TEAMS_ONLY_KEY_ID, ["msteams"]),
                ]
            }
        )

    async def _broken(self, outages: tuple[str, ...]) -> web.StreamResponse | None:
        if self.outage not in outages:
            return None
        if self.outage == "hang":
            await self._released.wait()
            return web.Response(status=503)
        if self.outage == "status 500":
            return web.Response(status=500, text="internal error")
        return web.Response(status=200, text="<html><body>Service unavailable</body></html>", content_type="text/html")

    # --- tokens ------------------------------------------------------------------------------
    def channel_token(
        self,
        app_id: str,
        service_url: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = KEY_ID,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A token as the Bot Framework puts on a channel's request; claims override (None drops one)."""
        now = int(time.time())
        payload = {
            "iss": CHANNEL_ISSUER,
            "aud": app_id,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + 3600,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        headers = {"kid": key_id} if key_id is not None else {}
        return self.sign(payload, headers, key or self.key, algorithm)

    @staticmethod
    def sign(payload: dict[str, Any], headers: dict[str, Any], key: Any, algorithm: str) -> str:
        if algorithm == "none":
            return jwt.encode(payload, None, algorithm="none", headers=headers)
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers)

    def hs256_with_public_key(self, payload: dict[str, Any]) -> str:
        """The algorithm-confusion forgery: HMAC-signed with the published public key as the secret.
        (PyJWT refuses to make one, so it is put together by hand.)"""
        public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": self.KEY_ID}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    # --- the bot's own outbound token ------------------------------------------------------------
    def bot_credentials(self, settings: Settings) -> PasswordServiceClientCredentialFactory:
        """The bot's identity as in production (which app ids its tokens may name), but with outbound
        Connector tokens issued here rather than by Entra through MSAL (which needs the internet)."""
        return _LocallyIssuedCredentials(self, settings.microsoft_app_id, settings.microsoft_app_password)


class _LocallyIssuedCredentials(PasswordServiceClientCredentialFactory):
    def __init__(self, entra: FakeEntra, app_id: str, password: str) -> None:
        super().__init__(app_id, password)
        self._entra = entra

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        if not await self.is_valid_app_id(app_id):
            raise PermissionError(f"not this bot's app id: {app_id}")
        now = int(time.time())
        claims = {
            "iss": "https://login.microsoftonline.com/fake/v2.0",
            "aud": oauth_scope,
            "appid": app_id,
            "iat": now,
            "exp": now + 3600,
        }
        token = FakeEntra.sign(claims, {"kid": FakeEntra.KEY_ID}, self._entra.key, "RS256")
        return BasicTokenAuthentication({"access_token": token})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
