"""Every setting the code reads is set by the Bicep template, present in
local.settings.json.sample and documented in the settings table, under the same name, and
nothing in those three is left over. Names and defaults agree everywhere."""

from __future__ import annotations

import pytest

from bootstrap import startup_warnings
from services.settings import SettingsError, load_settings
from services.state.cosmos import (
    CONVERSATION_INDEXING_POLICY,
    REFERENCE_DEFAULT_TTL,
    REFERENCE_INDEXING_POLICY,
    USER_INDEXING_POLICY,
)
from tests.deploy import bicep
from tests.deploy.project import (
    app_settings,
    code_settings,
    deploy_doc_settings,
    function_app,
    is_host_only,
    path,
    resources_of_type,
    sample_values,
    setting_value,
    settings_table,
    template,
    to_python,
)

CODE = code_settings()
TEMPLATE = template()
APP_SETTINGS = app_settings(TEMPLATE)
SAMPLE = sample_values()
TABLE_FILE, TABLE = settings_table()
# What a deployment needs besides what services/settings.py reads.
# Host overrides the code also reads (AzureFunctionsJobHost__...) are optional: documented, not set.
REQUIRED = sorted({*(n for n in CODE if not is_host_only(n)), "AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME"})
# Deliberate differences between the template and the code's defaults, with the reason.
TEMPLATE_OVERRIDES = {"MicrosoftAppType": "UserAssignedMSI"}  # the Azure deployment uses a managed identity


def _is_flex() -> bool:
    plans = resources_of_type(TEMPLATE, "Microsoft.Web/serverfarms")
    return any(path(p.value, "sku", "tier") == "FlexConsumption" for p in plans)


def test_the_code_reads_its_settings_through_services_settings() -> None:
    assert len(CODE) >= 15, sorted(CODE)
    assert {"AzureWebJobsStorage", "OperationsQueueName", "DirectLineSecret", "OperationSigningKey"} <= set(CODE)


@pytest.mark.parametrize("name", REQUIRED)
def test_the_template_sets_every_setting(name: str) -> None:
    if name == "AzureWebJobsStorage":
        # In Azure the account refuses shared keys: host storage and the app's clients are
        # identity-based, read from AzureWebJobsStorage__* (services/settings.py, StorageConnection).
        assert "AzureWebJobsStorage__accountName" in APP_SETTINGS
        assert "AzureWebJobsStorage" not in APP_SETTINGS, "a connection string would carry the account key"
        return
    if name == "FUNCTIONS_WORKER_RUNTIME" and _is_flex():
        runtime = path(function_app(TEMPLATE).value, "properties", "functionAppConfig", "runtime", "name")
        assert TEMPLATE.resolve(runtime) == "python"
        return
    assert name in APP_SETTINGS, f"infra/main.bicep does not set app setting {name}"


def test_the_template_runs_python_3_11() -> None:
    app = function_app(TEMPLATE)
    if _is_flex():
        runtime = to_python(TEMPLATE, path(app.value, "properties", "functionAppConfig", "runtime"))
        assert runtime == {"name": "python", "version": "3.11"}
    else:
        linux_fx = TEMPLATE.resolve(path(app.value, "properties", "siteConfig", "linuxFxVersion"))
        assert linux_fx == "Python|3.11"


def test_no_app_setting_that_flex_consumption_rejects() -> None:
    if not _is_flex():
        pytest.skip("not a Flex Consumption app")
    rejected = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
    }
    assert not rejected & set(APP_SETTINGS)


@pytest.mark.parametrize("name", REQUIRED)
def test_the_sample_has_every_setting(name: str) -> None:
    assert name in SAMPLE, f"local.settings.json.sample has no {name}"


@pytest.mark.parametrize("name", REQUIRED)
def test_the_settings_table_documents_every_setting(name: str) -> None:
    assert name in TABLE, f"{TABLE_FILE.name}'s settings table has no row for `{name}`"


@pytest.mark.parametrize(
    ("where", "names"),
    [
        ("infra/main.bicep app settings", sorted(APP_SETTINGS)),
        ("local.settings.json.sample", sorted(SAMPLE)),
        ("the settings table", sorted(TABLE)),
    ],
)
def test_nothing_is_set_that_the_code_does_not_read(where: str, names: list[str]) -> None:
    unused = [n for n in names if n not in CODE and not is_host_only(n)]
    assert not unused, f"{where} names settings the code never reads: {unused}"


def test_host_only_settings_in_use_are_documented() -> None:
    # In the settings table, or (settings only the deployment sets) in docs/deploy.md's tables.
    host_only = {n for n in [*APP_SETTINGS, *SAMPLE, *CODE] if is_host_only(n)}
    assert host_only - set(TABLE) - deploy_doc_settings() == set()


@pytest.mark.parametrize(
    "name",
    [
        "OperationsQueueName",
        "CosmosDbDatabaseId",
        "CosmosDbConversationStateContainerId",
        "CosmosDbUserStateContainerId",
        "CosmosDbReferenceContainerId",
        "ExternalEventsQueueName",
        "TranscriptTableName",
    ],
)
def test_queue_and_container_names_agree_everywhere(name: str) -> None:
    code_default = CODE[name].default
    assert code_default
    assert SAMPLE[name] == code_default
    assert setting_value(TEMPLATE, APP_SETTINGS[name]) == code_default


def test_template_defaults_match_the_code_defaults() -> None:
    differing = {}
    for name, value in APP_SETTINGS.items():
        setting = CODE.get(name)
        got = setting_value(TEMPLATE, value)
        if setting is None or setting.default is None or got is None:
            continue
        expected = TEMPLATE_OVERRIDES.get(name, setting.default)
        if got != expected:
            differing[name] = (got, expected)
    assert not differing, f"template value vs expected: {differing}"


# Deliberate differences between local.settings.json.sample (make run) and the code's defaults, with the reason.
SAMPLE_OVERRIDES = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # Azurite
    "CosmosDbAuthKey": None,  # the emulator's well-known key
    "DirectLineEndpoint": None,  # the local Direct Line
    "CosmosDbTimeToLive": "3600",  # short-lived local state
    "ExpireAfterSeconds": "300",  # expiry is seen within minutes locally
    "SweepSchedule": "*/15 * * * * *",  # and swept within seconds
}
# What the settings table's default column says instead of a value: only for settings without a default.
DESCRIBED_DEFAULTS = {"empty", "set by the template", "set by Azure", "required (or identity-based)"}


def _table_default(name: str) -> str:
    cells = [cell.strip() for cell in TABLE[name].strip().strip("|").split("|")]
    return cells[1].removeprefix("`").removesuffix("`")


@pytest.mark.parametrize("name", sorted(n for n, s in CODE.items() if s.default is not None and n in SAMPLE))
def test_the_sample_holds_the_code_default_values(name: str) -> None:
    if name in SAMPLE_OVERRIDES:
        expected = SAMPLE_OVERRIDES[name]
        assert SAMPLE[name] != CODE[name].default and expected in (None, SAMPLE[name]), name
        return
    assert SAMPLE[name] == CODE[name].default, f"local.settings.json.sample's {name} is not the code's default"


@pytest.mark.parametrize("name", sorted(n for n, s in CODE.items() if s.default is not None and n in TABLE))
def test_the_settings_table_gives_the_code_default_values(name: str) -> None:
    documented, default = _table_default(name), CODE[name].default
    if default == "":
        assert documented in DESCRIBED_DEFAULTS or documented == "", f"{name}: {documented!r}"
    else:
        assert documented == default, f"the settings table's default for {name} is not the code's"


def test_the_expiry_notice_has_one_default_text_everywhere() -> None:
    from services.settings import DEFAULT_EXPIRY_NOTICE_TEXT

    name = "ExpiryNoticeText"
    assert CODE[name].default == DEFAULT_EXPIRY_NOTICE_TEXT
    assert SAMPLE[name] == _table_default(name) == DEFAULT_EXPIRY_NOTICE_TEXT
    assert setting_value(TEMPLATE, APP_SETTINGS[name]) == DEFAULT_EXPIRY_NOTICE_TEXT
    assert load_settings(_template_defaults_env()).expiry_notice_text == DEFAULT_EXPIRY_NOTICE_TEXT


def _symbol_of(name: str) -> str:
    ident = APP_SETTINGS[name]
    assert isinstance(ident, bicep.Raw) and ident.single_identifier, f"{name} should be a plain parameter reference"
    return ident.single_identifier


def test_the_template_creates_both_queues_their_poison_queues_and_the_transcript_table() -> None:
    operations, events = _symbol_of("OperationsQueueName"), _symbol_of("ExternalEventsQueueName")
    names = []
    for queue in resources_of_type(TEMPLATE, "Microsoft.Storage/storageAccounts/queueServices/queues"):
        name_value = queue.body.entries["name"]
        if isinstance(name_value, bicep.Raw):
            tokens = [t for t in name_value.tokens if t.kind != "newline"]
            assert len(tokens) == 1 and tokens[0].kind in ("ident", "string")
            tok = tokens[0]
            if tok.kind == "ident":
                names.append(tok.value)
            else:
                inner = [[t.value for t in i if t.kind != "newline"] for i in tok.interpolations]
                names.append(
                    "".join(p + (f"{{{inner[k][0]}}}" if k < len(inner) else "") for k, p in enumerate(tok.parts))
                )
        else:
            names.append(str(name_value))
    assert sorted(names) == sorted([operations, f"{{{operations}}}-poison", events, f"{{{events}}}-poison"])
    tables = resources_of_type(TEMPLATE, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert [table.body.entries["name"].single_identifier for table in tables] == [_symbol_of("TranscriptTableName")]


def _containers() -> dict[str, bicep.Declaration]:
    out = {}
    for container in resources_of_type(TEMPLATE, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"):
        name = container.body.entries["name"]
        assert isinstance(name, bicep.Raw) and name.single_identifier
        out[name.single_identifier] = container
    return out


def test_the_template_creates_the_database_and_its_containers_with_the_settings_names() -> None:
    databases = resources_of_type(TEMPLATE, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases")
    assert len(databases) == 1
    db_name = databases[0].body.entries["name"]
    assert isinstance(db_name, bicep.Raw) and db_name.single_identifier == _symbol_of("CosmosDbDatabaseId")
    containers = _containers()
    assert set(containers) == {
        _symbol_of("CosmosDbConversationStateContainerId"),
        _symbol_of("CosmosDbUserStateContainerId"),
        _symbol_of("CosmosDbReferenceContainerId"),
    }
    for symbol, container in containers.items():
        resource = path(container.value, "properties", "resource")
        id_value = path(resource, "id")
        assert isinstance(id_value, bicep.Raw) and id_value.single_identifier == symbol
        assert to_python(TEMPLATE, path(resource, "partitionKey")) == {"paths": ["/id"], "kind": "Hash"}


def test_conversation_container_ttl_is_the_setting_and_user_container_has_none() -> None:
    containers = _containers()
    conversation = path(containers[_symbol_of("CosmosDbConversationStateContainerId")].value, "properties", "resource")
    user = path(containers[_symbol_of("CosmosDbUserStateContainerId")].value, "properties", "resource")
    ttl = path(conversation, "defaultTtl")
    ttl_setting = APP_SETTINGS["CosmosDbTimeToLive"]
    assert isinstance(ttl, bicep.Raw) and isinstance(ttl_setting, bicep.Raw)
    assert bicep.references(ttl.tokens) <= bicep.references(ttl_setting.tokens), (
        "defaultTtl and CosmosDbTimeToLive differ"
    )
    assert isinstance(user, bicep.BObject) and "defaultTtl" not in user.entries


def test_indexing_policies_match_services_cosmos() -> None:
    containers = _containers()
    conversation = containers[_symbol_of("CosmosDbConversationStateContainerId")]
    user = containers[_symbol_of("CosmosDbUserStateContainerId")]
    policy = to_python(TEMPLATE, path(conversation.value, "properties", "resource", "indexingPolicy"))
    assert policy == CONVERSATION_INDEXING_POLICY
    assert to_python(TEMPLATE, path(user.value, "properties", "resource", "indexingPolicy")) == USER_INDEXING_POLICY
    references = path(containers[_symbol_of("CosmosDbReferenceContainerId")].value, "properties", "resource")
    assert to_python(TEMPLATE, path(references, "indexingPolicy")) == REFERENCE_INDEXING_POLICY
    assert path(references, "defaultTtl") == REFERENCE_DEFAULT_TTL


def _template_defaults_env() -> dict[str, str]:
    env = {name: value for name, v in APP_SETTINGS.items() if (value := setting_value(TEMPLATE, v)) is not None}
    # Values only Azure knows at deployment time.
    env.update(
        AzureWebJobsStorage__accountName="stexample0123",
        MicrosoftAppId="00000000-0000-0000-0000-000000000001",
        MicrosoftAppTenantId="00000000-0000-0000-0000-000000000002",
        CosmosDbEndpoint="https://example.documents.azure.com:443/",
        DirectLineSecret="dummy-direct-line-secret",
        OperationSigningKey="00000000-0000-0000-0000-000000000003",  # the shape newGuid() gives
        HandoffSigningKey="00000000-0000-0000-0000-000000000004",
    )
    return env


def test_the_app_starts_with_the_template_defaults() -> None:
    settings = load_settings(_template_defaults_env())
    assert settings.microsoft_app_type == "UserAssignedMSI"
    assert settings.cosmos_auth_key == ""  # managed identity
    assert startup_warnings(settings) == []


def test_with_the_template_settings_the_app_reaches_storage_with_its_identity() -> None:
    settings = load_settings(_template_defaults_env())
    assert settings.storage.uses_identity and settings.storage.connection_string == ""
    assert settings.storage.queue_service_uri == "https://stexample0123.queue.core.windows.net"
    assert settings.storage.table_service_uri == "https://stexample0123.table.core.windows.net"
    # `managedidentity` without a client id: the system-assigned identity, the one holding the roles.
    assert APP_SETTINGS["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage__clientId" not in APP_SETTINGS and settings.storage.client_id == ""


def test_the_app_starts_with_the_sample_once_placeholders_are_filled() -> None:
    env = {k: ("x" * 43 if v.startswith("<generated") else v) for k, v in SAMPLE.items()}
    load_settings(env)
    with pytest.raises(SettingsError, match="OperationSigningKey"):
        load_settings({**env, "OperationSigningKey": "too-short"})
