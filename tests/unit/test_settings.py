"""Settings: typed, defaulted, and a missing or malformed one stops start-up, naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bootstrap import startup_warnings
from localdev.processes import PROJECT_ROOT
from services.settings import SettingsError, load_settings, longest_sweep_gap

VALID = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "CosmosDbEndpoint": "http://127.0.0.1:8081/",
    "DirectLineSecret": "secret",
    "OperationSigningKey": "k" * 32,
    "HandoffSigningKey": "h" * 32,
}


def test_defaults_and_types() -> None:
    settings = load_settings(VALID)
    assert settings.local_mode
    assert settings.expire_after_seconds == 1800
    assert settings.cosmos_time_to_live == 86400
    assert settings.operations_queue_name == "long-operations"
    assert settings.sweep_schedule == "0 */1 * * * *"
    assert settings.expiry_notice_enabled is True


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"CosmosDbEndpoint": ""}, "CosmosDbEndpoint"),
        ({"CosmosDbEndpoint": "localhost:8081"}, "CosmosDbEndpoint"),
        ({"AzureWebJobsStorage": " "}, "AzureWebJobsStorage"),
        ({"OperationSigningKey": "short"}, "OperationSigningKey"),
        ({"HandoffSigningKey": "short"}, "HandoffSigningKey"),
        ({"ExpireAfterSeconds": "ten"}, "ExpireAfterSeconds"),
        ({"ExpireAfterSeconds": "-5"}, "ExpireAfterSeconds"),
        ({"CosmosDbTimeToLive": "1.5"}, "CosmosDbTimeToLive"),
        ({"SweepSchedule": "*/5 * * *"}, "SweepSchedule"),
        ({"SweepSchedule": "00:00:00"}, "SweepSchedule"),
        ({"SweepSchedule": "every minute"}, "SweepSchedule"),
        ({"ExpiryNoticeEnabled": "maybe"}, "ExpiryNoticeEnabled"),
        ({"ExpiryNoticeText": "closed after {hours} hours"}, "ExpiryNoticeText"),
        ({"MicrosoftAppType": "Anonymous"}, "MicrosoftAppType"),
        ({"MicrosoftAppId": "0000", "MicrosoftAppPassword": ""}, "MicrosoftAppPassword"),
        (
            {"MicrosoftAppId": "0000", "MicrosoftAppType": "SingleTenant", "MicrosoftAppPassword": "p"},
            "MicrosoftAppTenantId",
        ),
    ],
)
def test_bad_setting_is_named(changes: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({**VALID, **changes})


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [("0 */1 * * * *", 60), ("*/15 * * * * *", 15), ("*/5 * * * *", 300), ("0 * * * *", 3600), ("00:00:30", 30),
     ("1.00:00:00", 86400)],
)  # fmt: skip
def test_every_schedule_form_the_functions_host_takes_is_accepted(schedule: str, gap: int) -> None:
    settings = load_settings({**VALID, "SweepSchedule": schedule})
    assert settings.sweep_schedule == schedule and longest_sweep_gap(schedule) == gap


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [("0 0,30 * * * *", 1800), ("0 0 9-17 * * *", 16 * 3600), ("0 0 0 * * 1", 7 * 86400), ("0 0 8 * * 1-5", 3 * 86400),
     ("0 0 0 * * MON", 7 * 86400), ("0 17 * * * *", 3600), ("5,35 * * * * *", 30)],
)  # fmt: skip
def test_the_longest_gap_of_a_schedule_is_never_underestimated(schedule: str, gap: int) -> None:
    """It sizes the storage time-to-live warning: a gap taken too short would hide it."""
    assert longest_sweep_gap(schedule) == gap


def test_the_app_refuses_to_start_naming_the_missing_setting() -> None:
    env = {k: v for k, v in os.environ.items() if k not in VALID}
    env.update({k: v for k, v in VALID.items() if k != "OperationSigningKey"})
    result = subprocess.run(
        [sys.executable, "-c", "import function_app"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Setting OperationSigningKey is required but missing or empty." in result.stderr


def test_the_app_warns_when_it_runs_without_authentication() -> None:
    env = {**os.environ, **VALID, "MicrosoftAppId": ""}
    script = "import logging; logging.basicConfig(); import function_app"
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Bot Framework authentication is off" in result.stderr


def test_start_up_warns_of_a_time_to_live_too_short_for_the_sweeper_and_of_authentication_off() -> None:
    schedule = {"ExpireAfterSeconds": "300", "SweepSchedule": "0 */1 * * * *"}
    safe = startup_warnings(load_settings({**VALID, **schedule, "CosmosDbTimeToLive": "3600"}))
    assert not any("CosmosDbTimeToLive" in warning for warning in safe)
    assert any("authentication is off" in warning for warning in safe)
    unsafe = startup_warnings(load_settings({**VALID, **schedule, "CosmosDbTimeToLive": "320"}))
    assert any("CosmosDbTimeToLive=320" in warning for warning in unsafe)
    with_app_id = {**VALID, "MicrosoftAppId": "app", "MicrosoftAppPassword": "password"}
    assert startup_warnings(load_settings(with_app_id)) == []


def test_the_worker_knows_the_hosts_max_dequeue_count_also_when_an_app_setting_overrides_host_json() -> None:
    from services.host_config import max_dequeue_count

    assert load_settings(VALID).max_dequeue_count_override is None
    assert max_dequeue_count(load_settings(VALID).max_dequeue_count_override) == 3  # host.json's
    overridden = load_settings({**VALID, "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "7"})
    assert max_dequeue_count(overridden.max_dequeue_count_override) == 7
    with pytest.raises(SettingsError, match="AzureFunctionsJobHost__extensions__queues__maxDequeueCount"):
        load_settings({**VALID, "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "many"})


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("CosmosDbEndpoint", "https://contoso.documents.azure.com:443/", True),
        ("CosmosDbEndpoint", "http://contoso.documents.azure.com:443/", False),
        ("CosmosDbEndpoint", "http://127.0.0.1:8081/", True),
        ("CosmosDbEndpoint", "http://localhost:8081/", True),
        ("CosmosDbEndpoint", "http://[::1]:8081/", True),
        ("DirectLineEndpoint", "http://directline.botframework.com/v3/directline", False),
        ("DirectLineEndpoint", "https://europe.directline.botframework.com/v3/directline", True),
        ("DirectLineEndpoint", "http://127.0.0.1:7072/v3/directline", True),
    ],
)
def test_remote_addresses_must_be_https(name: str, value: str, accepted: bool) -> None:
    if accepted:
        load_settings({**VALID, name: value})
    else:
        with pytest.raises(SettingsError, match=f"{name}.*https"):
            load_settings({**VALID, name: value})


def test_in_azure_an_empty_app_id_refuses_messages_instead_of_switching_authentication_off() -> None:
    assert load_settings(VALID).messages_refusal is None  # locally: authentication off, by design
    in_azure = load_settings({**VALID, "WEBSITE_SITE_NAME": "contoso-bot"})
    assert in_azure.running_in_azure
    assert in_azure.messages_refusal is not None and "MicrosoftAppId" in in_azure.messages_refusal
    configured = {**VALID, "WEBSITE_SITE_NAME": "contoso-bot", "MicrosoftAppId": "id", "MicrosoftAppPassword": "p"}
    assert load_settings(configured).messages_refusal is None


def test_quotas_default_and_zero_means_no_limit() -> None:
    settings = load_settings(VALID)
    assert (settings.max_running_operations_per_user, settings.operation_starts_per_user_per_hour) == (3, 20)
    unlimited = load_settings({**VALID, "MaxRunningOperationsPerUser": "0", "OperationStartsPerUserPerHour": "0"})
    assert (unlimited.max_running_operations_per_user, unlimited.operation_starts_per_user_per_hour) == (0, 0)
    with pytest.raises(SettingsError, match="MaxRunningOperationsPerUser"):
        load_settings({**VALID, "MaxRunningOperationsPerUser": "-1"})
