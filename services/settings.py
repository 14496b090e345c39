"""The one place that reads the environment.

Names match local.settings.json.sample, the Bicep template and the README's
settings table (tests/deploy/test_settings_consistency.py keeps them in step).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")
# The expiry notice's default (ExpiryNoticeText); the sample, the template and the README's settings
# table spell it too (tests/deploy/test_settings_consistency.py compares them).
DEFAULT_EXPIRY_NOTICE_TEXT = (
    "This conversation was closed after {duration} without activity. Send anything to start again."
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class StorageConnection:
    """Where the app's queues and transcript table are, and how it signs in there.

    Locally (Azurite) a connection string, `AzureWebJobsStorage`. In Azure the account takes no key:
    the endpoints (from `AzureWebJobsStorage__accountName`, or the `__queueServiceUri` and
    `__tableServiceUri` settings) with the app's managed identity, the same settings the Functions
    host reads for its own storage and the queue triggers. `client_id` names a user-assigned
    identity; empty, the system-assigned one."""

    connection_string: str = ""
    queue_service_uri: str = ""
    table_service_uri: str = ""
    client_id: str = ""

    @property
    def uses_identity(self) -> bool:
        return not self.connection_string

    @classmethod
    def of(cls, connection: StorageConnection | str) -> StorageConnection:
        """A StorageConnection as given, or one from a connection string (local tools and tests)."""
        return connection if isinstance(connection, StorageConnection) else cls(connection_string=connection)


@dataclass(frozen=True)
class Settings:
    microsoft_app_id: str
    microsoft_app_password: str
    microsoft_app_tenant_id: str
    microsoft_app_type: str
    expire_after_seconds: int
    cosmos_endpoint: str
    cosmos_auth_key: str
    cosmos_database_id: str
    cosmos_conversation_container_id: str
    cosmos_user_container_id: str
    cosmos_time_to_live: int
    storage: StorageConnection
    operations_queue_name: str
    operation_timeout_seconds: int
    progress_interval_seconds: int
    direct_line_endpoint: str
    direct_line_secret: str
    operation_signing_key: str
    handoff_signing_key: str  # the agent hub signs its handoff.status events with it
    sweep_schedule: str
    expiry_notice_enabled: bool
    expiry_notice_text: str
    transcripts_enabled: bool
    transcript_table_name: str
    transcript_retention_days: int
    transcript_redact_user_text: bool
    handoff_timeout_seconds: int
    handoff_after_misunderstandings: int
    cosmos_reference_container_id: str
    external_events_queue_name: str
    notifications_per_second: float
    health_cache_seconds: int  # /api/health answers from a result this young: probes cost no backend calls
    max_dequeue_count_override: int | None  # the host's app-setting override of host.json
    # Where the app's spans go when the Python worker has not configured Azure Monitor itself
    # (services/telemetry.py); empty: no spans, unless a tracer provider is installed (local host).
    application_insights_connection_string: str = ""
    # Per user, across their conversations; 0: no limit (benchmarks).
    max_running_operations_per_user: int = 3
    operation_starts_per_user_per_hour: int = 20
    progress_messages_per_operation: int = 2
    # The App Service platform sets WEBSITE_SITE_NAME on every Azure Functions instance.
    azure_site_name: str = ""
    # The Direct Line site whose secret the token function exchanges for browsers' tokens; empty: the
    # worker's own (DirectLineSecret). Read it through web_chat_direct_line_secret.
    direct_line_client_secret: str = ""

    @property
    def web_chat_direct_line_secret(self) -> str:
        """The secret behind the tokens /api/directline/token hands to browsers."""
        return self.direct_line_client_secret or self.direct_line_secret

    @property
    def storage_connection_string(self) -> str:
        """The storage connection string (Azurite, local tools); empty when storage is identity-based."""
        return self.storage.connection_string

    @property
    def local_mode(self) -> bool:
        """No app id: Bot Framework authentication is off (local development only)."""
        return not self.microsoft_app_id

    @property
    def running_in_azure(self) -> bool:
        return bool(self.azure_site_name)

    @property
    def messages_refusal(self) -> str | None:
        """Why /api/messages must refuse every request, if it must: in Azure, never without bot credentials."""
        if self.running_in_azure and self.local_mode:
            return (
                "Setting MicrosoftAppId is empty on an Azure deployment: /api/messages refuses every request, "
                "because without it Bot Framework authentication would be off. Set MicrosoftAppId (and its "
                "credentials) in the app's settings."
            )
        return None


def _text(environ: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise SettingsError(f"Setting {name} is required but missing or empty.")
    return default


def _parsed(environ: Mapping[str, str], name: str, default: str | None, parse: Callable[[str], T], expected: str) -> T:
    raw = _text(environ, name, default)
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"Setting {name}={raw!r} is malformed: expected {expected}.") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


# The Functions host lets an app setting override host.json (AzureFunctionsJobHost__<path>); the
# worker must know the queue's maxDequeueCount the host really applies (services/host_config.py).
MAX_DEQUEUE_COUNT_OVERRIDE = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"


def _optional_positive_int(environ: Mapping[str, str], name: str) -> int | None:
    if not environ.get(name, "").strip():
        return None
    return _parsed(environ, name, None, _positive_int, "a positive whole number")


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(raw)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_host(host: str | None) -> bool:
    return (host or "").lower() in LOOPBACK_HOSTS or (host or "").startswith("127.")


def is_secure_address(url: str) -> bool:
    """An https URL, or plain http to this machine only (the local stand-ins): secrets, tokens and keys
    travel to and from these addresses."""
    parsed = urlparse(url)
    if not parsed.netloc or parsed.scheme not in ("http", "https"):
        return False
    return parsed.scheme == "https" or is_loopback_host(parsed.hostname)


def _url(raw: str) -> str:
    if not is_secure_address(raw):
        raise ValueError(raw)
    return raw


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(raw)
    return value


def _table_name(raw: str) -> str:
    # Azure Table names: 3-63 alphanumeric characters, not starting with a digit.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", raw):
        raise ValueError(raw)
    return raw


def _signing_key(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError(raw)
    return raw


def _notice_template(raw: str) -> str:
    try:
        raw.format(minutes=1, duration="1 min")
    except (KeyError, IndexError, ValueError):
        raise ValueError(raw) from None
    return raw


# The timer trigger's TimeSpan form, [d.]hh:mm:ss (App Service plans; the host accepts it anywhere).
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d{1,7})?$")


def _timespan_seconds(raw: str) -> int | None:
    match = _TIMESPAN.match(raw.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _schedule(raw: str) -> str:
    """What the Functions host takes for a timer: six-field NCRONTAB (seconds first), five-field
    (minutes first, run at second 0), or a TimeSpan."""
    if ":" in raw:
        if not _timespan_seconds(raw):
            raise ValueError(raw)
        return raw
    if len(raw.split()) not in (5, 6):
        raise ValueError(raw)
    return raw


# NCRONTAB fields, seconds first: (seconds per step, how many values, lowest value). Day of month and
# month are counted as 31 days and 12 months of 31 days: a gap is an upper bound, never too short.
_CRON_FIELDS = ((1, 60, 0), (60, 60, 0), (3600, 24, 0), (86400, 31, 1), (31 * 86400, 12, 1), (86400, 7, 0))
# Coarse to fine: the coarsest field that restricts when a timer runs sets its longest gap.
_COARSE_TO_FINE = (4, 5, 3, 2, 1, 0)


def longest_sweep_gap(schedule: str) -> int:
    """The longest gap between two runs of a timer schedule (see _schedule), in seconds: the TimeSpan,
    or for NCRONTAB the widest step between the allowed values of its coarsest restricted field
    ("0 0,30 * * * *": 30 min; "0 0 9-17 * * *": 16 h; "0 0 0 * * 1": a week)."""
    interval = _timespan_seconds(schedule) if ":" in schedule else None
    if interval:
        return interval
    fields = schedule.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    for index in _COARSE_TO_FINE:
        unit, count, lowest = _CRON_FIELDS[index]
        allowed = _cron_values(fields[index], count, lowest)
        if allowed is None:  # names (MON, Jan) and the like: assume one value a cycle
            return unit * count
        if len(allowed) < count:
            ordered = sorted(allowed)
            steps = [b - a for a, b in pairwise(ordered)] + [ordered[0] + count - ordered[-1]]
            return unit * max(steps)
    return 1


def _cron_values(field: str, count: int, lowest: int) -> set[int] | None:
    """The values one NCRONTAB field allows (`*`, `a`, `a-b`, with `/step`, comma-separated); None if unread."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if span == "*":
            first, last = lowest, lowest + count - 1
        elif span.isdigit():
            first = int(span)
            last = first if not step_text else lowest + count - 1
        elif "-" in span and all(side.isdigit() for side in span.split("-", 1)):
            first, last = (int(side) for side in span.split("-", 1))
        else:
            return None
        if not (step_text or "1").isdigit() or int(step_text or "1") == 0:
            return None
        values.update(value % 7 if count == 7 else value for value in range(first, last + 1, int(step_text or "1")))
    return values


_URL_EXPECTED = "an https URL (http only for this machine: localhost, 127.0.0.1, ::1)"


# An account name as Azure Storage allows it; the host builds the same endpoints from it.
_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_IDENTITY_BASED = "AzureWebJobsStorage__"


def _storage_connection(env: Mapping[str, str]) -> StorageConnection:
    """AzureWebJobsStorage as the Functions host reads it: a connection string, or identity-based
    settings under AzureWebJobsStorage__ (accountName, or the service URIs; credential, clientId)."""
    connection_string = env.get("AzureWebJobsStorage", "").strip()
    if connection_string:
        return StorageConnection(connection_string=connection_string)
    account = env.get("AzureWebJobsStorage__accountName", "").strip()
    queue_uri = env.get("AzureWebJobsStorage__queueServiceUri", "").strip()
    table_uri = env.get("AzureWebJobsStorage__tableServiceUri", "").strip()
    if not account and not queue_uri:
        raise SettingsError(
            "Setting AzureWebJobsStorage is required but missing or empty "
            "(or, identity-based, AzureWebJobsStorage__accountName)."
        )
    if account and not _STORAGE_ACCOUNT.fullmatch(account):
        raise SettingsError(
            f"Setting AzureWebJobsStorage__accountName={account!r} is malformed: "
            "expected 3-24 lowercase letters and digits."
        )
    if not table_uri and not account:
        raise SettingsError(
            "Setting AzureWebJobsStorage__tableServiceUri is required with AzureWebJobsStorage__queueServiceUri "
            "(the transcripts' table), unless AzureWebJobsStorage__accountName is set."
        )
    # The endpoints of the public cloud, as the host derives them from accountName.
    queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    table_uri = table_uri or f"https://{account}.table.core.windows.net"
    for name, uri in (("queueServiceUri", queue_uri), ("tableServiceUri", table_uri)):
        if urlparse(uri).scheme != "https" or not urlparse(uri).netloc:
            raise SettingsError(f"Setting {_IDENTITY_BASED}{name}={uri!r} is malformed: expected an https URL.")
    credential = env.get("AzureWebJobsStorage__credential", "managedidentity").strip() or "managedidentity"
    if credential.lower() != "managedidentity":
        raise SettingsError(
            f"Setting AzureWebJobsStorage__credential={credential!r} is malformed: expected managedidentity."
        )
    return StorageConnection(
        queue_service_uri=queue_uri,
        table_service_uri=table_uri,
        client_id=env.get("AzureWebJobsStorage__clientId", "").strip(),
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ
    app_type = _parsed(env, "MicrosoftAppType", "MultiTenant", _one_of(APP_TYPES), " or ".join(APP_TYPES))
    app_id = env.get("MicrosoftAppId", "").strip()
    settings = Settings(
        microsoft_app_id=app_id,
        microsoft_app_password=env.get("MicrosoftAppPassword", "").strip(),
        microsoft_app_tenant_id=env.get("MicrosoftAppTenantId", "").strip(),
        microsoft_app_type=app_type,
        expire_after_seconds=_parsed(env, "ExpireAfterSeconds", "1800", _positive_int, "a positive number of seconds"),
        cosmos_endpoint=_parsed(env, "CosmosDbEndpoint", None, _url, _URL_EXPECTED),
        cosmos_auth_key=env.get("CosmosDbAuthKey", "").strip(),
        cosmos_database_id=_text(env, "CosmosDbDatabaseId", "bot-db"),
        cosmos_conversation_container_id=_text(env, "CosmosDbConversationStateContainerId", "conversation-state"),
        cosmos_user_container_id=_text(env, "CosmosDbUserStateContainerId", "user-state"),
        cosmos_time_to_live=_parsed(env, "CosmosDbTimeToLive", "86400", _positive_int, "a positive number of seconds"),
        storage=_storage_connection(env),
        operations_queue_name=_text(env, "OperationsQueueName", "long-operations"),
        operation_timeout_seconds=_parsed(
            env, "OperationTimeoutSeconds", "600", _positive_int, "a positive number of seconds"
        ),
        progress_interval_seconds=_parsed(
            env, "ProgressIntervalSeconds", "5", _positive_int, "a positive number of seconds"
        ),
        direct_line_endpoint=_parsed(
            env, "DirectLineEndpoint", "https://directline.botframework.com/v3/directline", _url, _URL_EXPECTED
        ),
        direct_line_secret=_text(env, "DirectLineSecret"),
        direct_line_client_secret=env.get("DirectLineClientSecret", "").strip(),
        operation_signing_key=_parsed(
            env, "OperationSigningKey", None, _signing_key, "a random string of at least 32 characters"
        ),
        handoff_signing_key=_parsed(
            env, "HandoffSigningKey", None, _signing_key, "a random string of at least 32 characters"
        ),
        sweep_schedule=_parsed(
            env,
            "SweepSchedule",
            "0 */1 * * * *",
            _schedule,
            "an NCRONTAB expression (six fields, seconds first, or five) or a TimeSpan such as 00:01:00",
        ),
        expiry_notice_enabled=_parsed(env, "ExpiryNoticeEnabled", "true", _bool, "true or false"),
        expiry_notice_text=_parsed(
            env,
            "ExpiryNoticeText",
            DEFAULT_EXPIRY_NOTICE_TEXT,
            _notice_template,
            "text whose only placeholders are {minutes} and {duration}",
        ),
        transcripts_enabled=_parsed(env, "TranscriptsEnabled", "true", _bool, "true or false"),
        transcript_table_name=_parsed(
            env, "TranscriptTableName", "transcripts", _table_name, "3-63 letters and digits, starting with a letter"
        ),
        transcript_retention_days=_parsed(
            env, "TranscriptRetentionDays", "30", _positive_int, "a positive number of days"
        ),
        transcript_redact_user_text=_parsed(env, "TranscriptRedactUserText", "false", _bool, "true or false"),
        handoff_timeout_seconds=_parsed(
            env, "HandoffTimeoutSeconds", "300", _positive_int, "a positive number of seconds"
        ),
        handoff_after_misunderstandings=_parsed(
            env, "HandoffAfterMisunderstandings", "3", _non_negative_int, "a number of messages, 0 for never"
        ),
        cosmos_reference_container_id=_text(env, "CosmosDbReferenceContainerId", "conversation-references"),
        external_events_queue_name=_text(env, "ExternalEventsQueueName", "external-events"),
        max_dequeue_count_override=_optional_positive_int(env, MAX_DEQUEUE_COUNT_OVERRIDE),
        notifications_per_second=_parsed(
            env, "NotificationsPerSecond", "10", _positive_float, "a positive number (messages per second)"
        ),
        health_cache_seconds=_parsed(
            env, "HealthCacheSeconds", "5", _non_negative_int, "a number of seconds, 0 to check on every probe"
        ),
        application_insights_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip(),
        max_running_operations_per_user=_parsed(
            env, "MaxRunningOperationsPerUser", "3", _non_negative_int, "a number of operations, 0 for no limit"
        ),
        operation_starts_per_user_per_hour=_parsed(
            env, "OperationStartsPerUserPerHour", "20", _non_negative_int, "a number of operations, 0 for no limit"
        ),
        progress_messages_per_operation=_parsed(
            env, "ProgressMessagesPerOperation", "2", _non_negative_int, "a number of messages, 0 for typing only"
        ),
        azure_site_name=env.get("WEBSITE_SITE_NAME", "").strip(),
    )
    if app_id and app_type != "UserAssignedMSI" and not settings.microsoft_app_password:
        raise SettingsError("Setting MicrosoftAppPassword is required when MicrosoftAppId is set.")
    if app_type in ("SingleTenant", "UserAssignedMSI") and app_id and not settings.microsoft_app_tenant_id:
        raise SettingsError(f"Setting MicrosoftAppTenantId is required when MicrosoftAppType is {app_type}.")
    return settings
