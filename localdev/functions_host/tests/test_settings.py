"""Settings: local.settings.json, environment precedence, --setting, host.json overrides."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from localdev.functions_host import FunctionsHost, HostOptions, spawn_host
from localdev.functions_host.hostjson import load_host_config
from localdev.functions_host.settings import (
    SettingsError,
    apply_settings,
    read_local_settings,
    read_settings_file,
    resolve,
    storage_connection_string,
)
from localdev.functions_host.tests.helpers import LOG_DIR, copy_app
from localdev.processes import free_ports


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


def test_settings_file_values_read_as_core_tools_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    assert read_settings_file(path) == {}
    values = {"A": "1", "B": 2, "C": True, "D": None, "E": 1.5, "F": ""}
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    # Newtonsoft reads JSON true into a string as "True"; null stays null (func start skips it).
    assert read_settings_file(path) == {"A": "1", "B": "2", "C": "True", "D": None, "E": "1.5", "F": ""}
    environ: dict[str, str] = {}
    applied = apply_settings(read_settings_file(path), environ=environ)
    assert environ == {"A": "1", "B": "2", "C": "True", "E": "1.5", "F": ""} and applied.skipped == ["D"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"IsEncrypted": True, "Values": {"A": "x"}}, "is encrypted"),
        # Core Tools reads a missing IsEncrypted as true, then fails to decrypt the values.
        ({"Values": {"A": "x"}}, 'has no "IsEncrypted": false'),
        ({"IsEncrypted": False, "Values": {"A": {"nested": 1}}}, "Values.A is an object or array"),
        ({"IsEncrypted": False, "Host": {"CORS": "*", "CORSCredentials": True}}, "wildcard"),
    ],
)
def test_settings_files_func_start_cannot_use_are_refused(tmp_path: Path, document: dict, message: str) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(document))
    with pytest.raises(SettingsError, match=message):
        read_local_settings(path)


def test_connection_strings_and_host_section(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    document = {
        "IsEncrypted": False,
        "Values": {"A": "1"},
        "ConnectionStrings": {"Sql": "Server=x", "Other": {"ConnectionString": "y", "ProviderName": "p"}},
        "Host": {"LocalHttpPort": 7123, "CORS": "http://a.test,http://b.test", "CORSCredentials": True},
    }
    path.write_text(json.dumps(document))
    local = read_local_settings(path)
    # func start puts connection strings in the environment as ConnectionStrings:<name>.
    assert local.environment() == {"A": "1", "ConnectionStrings:Sql": "Server=x", "ConnectionStrings:Other": "y"}
    assert (local.http_port, local.cors_credentials) == (7123, True)
    assert local.cors_origins == ("http://a.test", "http://b.test")


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
    defaults = load_host_config(tmp_path, {"WEBSITE_SKU": "Dynamic"})  # no host.json: the runtime's defaults
    assert defaults.route_prefix == "api"
    # newBatchThreshold: batchSize/2 times the processor count, which counts as 1 on Consumption.
    assert defaults.queues.batch_size == 16 and defaults.queues.new_batch_threshold == 8
    assert load_host_config(tmp_path, {}).queues.new_batch_threshold == 8 * (os.cpu_count() or 1)
    assert defaults.queues.max_polling_interval == 60 and defaults.queues.max_dequeue_count == 5
    assert defaults.queues.message_encoding == "base64" and defaults.queues.visibility_timeout == 0
    assert defaults.function_timeout == 1800  # 30 min, as under func start (5 min on Consumption)

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
    config = load_host_config(
        tmp_path, {"AzureFunctionsJobHost__extensions__queues__messageEncoding": "None", "WEBSITE_SKU": "Dynamic"}
    )
    assert config.route_prefix == ""
    assert config.function_timeout == 300
    assert config.queues.max_polling_interval == 2 and config.queues.visibility_timeout == 30
    assert config.queues.batch_size == 4 and config.queues.new_batch_threshold == 2
    assert config.queues.message_encoding == "none"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:05", 300), ("1.00:00:00", 86400), ("1:02:03:04", 93784), ("00:00:00.25", 0.25), (0, 0), ("-1", None)],
)
def test_host_json_timespans_read_as_dotnet_reads_them(tmp_path: Path, value: object, seconds: float | None) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "functionTimeout": value}))
    if seconds is not None and seconds < 1:
        with pytest.raises(SettingsError, match="minimum of 00:00:01"):
            load_host_config(tmp_path, {})
    else:
        assert load_host_config(tmp_path, {}).function_timeout == seconds  # "-1": no limit


@pytest.mark.parametrize(
    ("host_json", "message"),
    [
        ({"extensions": {}}, "missing the required 'version' property"),
        ({"version": "3.0"}, "'3.0' is an invalid value for host.json 'version' property"),
        # The runtime reads a bare number as days: 2000 is not 2 s but 2000 days.
        ({"version": "2.0", "extensions": {"queues": {"maxPollingInterval": 2000}}}, "reads as 2000 days"),
        ({"version": "2.0", "functionTimeout": "300"}, "reads as 300 days"),
        ({"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.05"}}}, "less than the minimum"),
        ({"version": "2.0", "extensions": {"queues": {"batchSize": 33}}}, "batchSize: 33 must be 1-32"),
        ({"version": "2.0", "extensions": {"queues": {"newBatchThreshold": -1}}}, "must be at least 0"),
        ({"version": "2.0", "extensions": {"queues": {"visibilityTimeout": "00:61:00"}}}, "not a valid TimeSpan"),
    ],
)
def test_host_json_the_runtime_refuses_or_misreads_is_refused(tmp_path: Path, host_json: dict, message: str) -> None:
    (tmp_path / "host.json").write_text(json.dumps(host_json))
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_host_config(tmp_path, {})


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
    elsewhere.write_text(json.dumps({"IsEncrypted": False, "Values": {"FromFile": "other"}}))
    host = spawn_host(app_dir, settings_file=elsewhere, log_path=LOG_DIR / "functions-host-settings.log")
    try:
        with urllib.request.urlopen(f"{host.base_url}/api/settings") as response:
            assert json.load(response)["import"]["FromFile"] == "other"
    finally:
        assert host.stop() == 0


async def test_func_start_settings_reach_the_app_and_host_local_http_port_is_the_default_port(tmp_path: Path) -> None:
    app_dir = copy_app("settings_app", tmp_path)
    port = free_ports(1)[0]
    document = {
        "IsEncrypted": False,
        "Values": {"FromFile": "file", "AZURE_FUNCTIONS_ENVIRONMENT": "Production"},
        "ConnectionStrings": {"Db": "Server=db"},
        "Host": {"LocalHttpPort": port},
    }
    (app_dir / "local.settings.json").write_text(json.dumps(document))
    # No port given: Host.LocalHttpPort, as func start does.
    host = FunctionsHost(HostOptions(app_dir=app_dir, restore_environment=True))
    await host.start()
    try:
        names = "WEBSITE_HOSTNAME,AZURE_FUNCTIONS_ENVIRONMENT,ConnectionStrings:Db,AzureWebJobsScriptRoot,FromFile"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/api/env", params={"names": names}) as response:
                seen = await response.json()
    finally:
        await host.stop()
    assert seen == {
        "WEBSITE_HOSTNAME": f"localhost:{port}",  # apps build their own URLs from it
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development",  # func start overrides it
        "ConnectionStrings:Db": "Server=db",
        "AzureWebJobsScriptRoot": str(app_dir.resolve()),
        "FromFile": "file",
    }
    assert "WEBSITE_HOSTNAME" not in os.environ  # the in-process host put the environment back


def test_queue_trigger_without_extension_bundle_does_not_start(tmp_path: Path) -> None:
    app_dir = copy_app("queue_app", tmp_path, {"version": "2.0"})
    settings = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RECORD_DIR": str(tmp_path)}
    settings |= {name: "q" + name.lower() for name in ("OrdersQueue", "FailQueue", "BatchQueue", "SlowQueue")}
    with pytest.raises(RuntimeError, match=r"The binding type\(s\) 'queueTrigger' are not registered"):
        spawn_host(app_dir, settings=settings, log_path=LOG_DIR / "functions-host-no-bundle.log")
