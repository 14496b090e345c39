"""Settings: local.settings.json, environment precedence, --setting, host.json overrides."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from localdev.functions_host import spawn_host
from localdev.functions_host.hostjson import load_host_config
from localdev.functions_host.settings import (
    SettingsError,
    apply_settings,
    read_settings_file,
    resolve,
    storage_connection_string,
)
from localdev.functions_host.tests.helpers import LOG_DIR, copy_app


def test_file_values_yield_to_non_empty_environment_like_core_tools() -> None:
    environ = {"EnvWins": "env", "EmptyInEnv": ""}
    applied = apply_settings(
        {"FromFile": "file", "EnvWins": "file", "EmptyInEnv": "file", "CliWins": "file"},
        {"CliWins": "cli"},
        environ,
    )
    assert environ == {"FromFile": "file", "EnvWins": "env", "EmptyInEnv": "file", "CliWins": "cli"}
    assert applied.skipped == ["EnvWins"]
    applied.restore(environ)
    assert environ == {"EnvWins": "env", "EmptyInEnv": ""}


def test_settings_file_reading(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    assert read_settings_file(path) == {}
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "1", "B": 2, "C": True, "D": None}}))
    assert read_settings_file(path) == {"A": "1", "B": "2", "C": "true", "D": ""}
    path.write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    with pytest.raises(SettingsError, match="encrypted"):
        read_settings_file(path)


def test_setting_expressions() -> None:
    assert resolve("%Queue%", {"Queue": "orders"}) == "orders"
    assert resolve("pre-%A%-%B%", {"A": "x", "B": "y"}) == "pre-x-y"
    assert resolve("literal", {}) == "literal"
    with pytest.raises(SettingsError, match="does not resolve"):
        resolve("%Missing%", {})


def test_storage_connections() -> None:
    explicit = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;QueueEndpoint=http://h:1/a;"
    assert storage_connection_string(None, {"AzureWebJobsStorage": explicit}) == explicit
    assert storage_connection_string("Storage", {"AzureWebJobsStorage": explicit}) == explicit
    assert storage_connection_string("MyConn", {"MyConn": explicit}) == explicit
    development = storage_connection_string(None, {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;" in development
    with pytest.raises(SettingsError):
        storage_connection_string("Nope", {})


def test_host_json_defaults_values_and_setting_overrides(tmp_path: Path) -> None:
    defaults = load_host_config(tmp_path, {})
    assert defaults.route_prefix == "api"
    assert defaults.queues.batch_size == 16 and defaults.queues.new_batch_threshold == 8
    assert defaults.queues.max_polling_interval == 60 and defaults.queues.max_dequeue_count == 5
    assert defaults.queues.message_encoding == "base64"

    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "functionTimeout": "00:05:00",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {"maxPollingInterval": "00:00:02", "visibilityTimeout": "00:00:30", "batchSize": 4},
                },
            }
        )
    )
    config = load_host_config(tmp_path, {"AzureFunctionsJobHost__extensions__queues__messageEncoding": "None"})
    assert config.route_prefix == ""
    assert config.function_timeout == 300
    assert config.queues.max_polling_interval == 2 and config.queues.visibility_timeout == 30
    assert config.queues.batch_size == 4 and config.queues.new_batch_threshold == 2
    assert config.queues.message_encoding == "none"


async def test_host_loads_local_settings_before_importing_the_app(tmp_path: Path) -> None:
    app_dir = copy_app("settings_app", tmp_path)
    settings_values = {"FromFile": "file", "EnvWins": "file", "EmptyInEnv": "file", "CliWins": "file"}
    (app_dir / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": settings_values}))
    host = spawn_host(
        app_dir,
        settings={"CliWins": "cli", "OnlyCli": "cli"},
        extra_env={"EnvWins": "env", "EmptyInEnv": ""},
        log_path=LOG_DIR / "functions-host-settings.log",
    )
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{host.base_url}/api/settings") as response:
            seen = await response.json()
    finally:
        assert host.stop() == 0
    expected = {"FromFile": "file", "EnvWins": "env", "EmptyInEnv": "file", "CliWins": "cli", "OnlyCli": "cli"}
    assert seen == {"import": expected, "call": expected}
    assert "Skipping 'EnvWins' from local settings" in host.output


def test_settings_file_option(tmp_path: Path) -> None:
    app_dir = copy_app("settings_app", tmp_path)
    elsewhere = tmp_path / "other.settings.json"
    elsewhere.write_text(json.dumps({"Values": {"FromFile": "other"}}))
    host = spawn_host(app_dir, settings_file=elsewhere, log_path=LOG_DIR / "functions-host-settings.log")
    try:
        with urllib.request.urlopen(f"{host.base_url}/api/settings") as response:
            assert json.load(response)["import"]["FromFile"] == "other"
    finally:
        assert host.stop() == 0
