"""infra/main.bicep without a Bicep compiler: structure, symbols, resource types, secrets
kept out of outputs, and the wiring a deployment depends on (bot endpoint, Direct Line,
identities, telemetry). The template is read through tree-sitter-bicep's grammar
(tests/deploy/bicep.py), so a syntax error fails every test here; the resource providers'
schemas are checked in test_arm_schema.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.deploy import bicep
from tests.deploy.project import (
    PARAMETERS,
    ROOT,
    TEMPLATE,
    app_settings,
    function_app,
    key_vault_secret,
    path,
    resources_of_type,
    template,
    to_python,
)

TPL = template()
SETTINGS = app_settings(TPL)
# tree-sitter-bicep's grammar (pinned in requirements-dev.txt) predates some Bicep syntax,
# e.g. the `?.` operator, which the template therefore avoids.


def _parse_text(text: str, tmp_path: Path) -> bicep.Template:
    file = tmp_path / "t.bicep"
    file.write_text(textwrap.dedent(text))
    return bicep.parse(file)


# ------------------------------------------------------------- the checker bites


def test_checker_rejects_syntax_errors_with_their_line(tmp_path: Path) -> None:
    with pytest.raises(bicep.BicepError, match=r"line 3: '\]' is missing"):
        _parse_text("var x = {\n  a: [\n    1\n}\n", tmp_path)
    with pytest.raises(bicep.BicepError, match="line 1: syntax error"):
        _parse_text("var x = {\n  a: 1\n", tmp_path)
    with pytest.raises(bicep.BicepError, match='line 2: "\'" is missing'):
        _parse_text("var x = 'abc\n", tmp_path)
    with pytest.raises(bicep.BicepError, match="line 3: property 'a' appears twice"):
        _parse_text("var x = {\n  a: 1\n  a: 2\n}\n", tmp_path)


def test_checker_rejects_a_malformed_resource_type(tmp_path: Path) -> None:
    with pytest.raises(bicep.BicepError, match="Namespace/type@yyyy-mm-dd"):
        _parse_text("resource s 'Microsoft.Storage/storageAccounts@2023-5-01' = {\n  name: 'x'\n}\n", tmp_path)


def test_checker_finds_undeclared_symbols_and_secret_outputs(tmp_path: Path) -> None:
    tpl = _parse_text(
        """\
        @secure()
        param key string
        var k = '${key}-x'
        resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {
          name: nme
        }
        output a string = s.listKeys().keys[0].value
        output b string = k
        output c string = s.name
        """,
        tmp_path,
    )
    assert [p for p in bicep.unresolved_references(tpl) if "'nme'" in p]
    assert sorted(_secret_outputs(tpl)) == ["a", "b"]


# ------------------------------------------------------------------- structure


def test_template_parses_and_has_the_expected_resources() -> None:
    types = {r.full_type for r in TPL.resources}
    assert {
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Web/sites/config",
        "Microsoft.Insights/components",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.DocumentDB/databaseAccounts",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "Microsoft.BotService/botServices",
        "Microsoft.BotService/botServices/channels",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    } <= types


def test_symbol_names_are_unique() -> None:
    symbols = [d.name for d in TPL.declarations if d.keyword in ("param", "var", "resource", "module")]
    symbols += [r.name for r in TPL.resources if r.parent is not None]
    outputs = [d.name for d in TPL.of("output")]
    assert len(symbols) == len(set(symbols)), sorted(n for n in symbols if symbols.count(n) > 1)
    assert len(outputs) == len(set(outputs))


def test_every_referenced_symbol_and_function_is_declared() -> None:
    assert bicep.unresolved_references(TPL) == []


def test_child_resources_declared_with_parent_have_their_parent_type() -> None:
    for res in TPL.resources:
        parent = res.body.entries.get("parent")
        if parent is None:
            continue
        assert isinstance(parent, bicep.Raw) and parent.single_identifier
        parent_decl = TPL.symbol(parent.single_identifier)
        assert res.full_type.startswith(parent_decl.full_type + "/"), (
            f"{res.name}: {res.full_type} under {parent_decl.full_type}"
        )
        assert res.full_type.count("/") == parent_decl.full_type.count("/") + 1


def test_every_param_is_used() -> None:
    used: set[str] = set()
    for decl in TPL.declarations:
        used |= bicep.references(bicep.expression_tokens(decl))
    unused = [p.name for p in TPL.of("param") if p.name not in used]
    assert not unused


def test_parameters_file_sets_no_value_itself() -> None:
    # azd's file: every value is a ${NAME} reference to the azd environment (tests/deploy/
    # test_azd_and_workflow.py), so no secret, and no default that only azd would apply.
    given = json.loads(PARAMETERS.read_text())["parameters"]
    literal = {name: entry["value"] for name, entry in given.items() if not str(entry["value"]).startswith("${")}
    assert literal == {}


# --------------------------------------------------------------------- secrets


def _secret_outputs(tpl: bicep.Template) -> list[str]:
    """Outputs that reach a list*() call, a @secure() param or the app settings resource."""
    secret_symbols = {p.name for p in tpl.of("param") if "secure" in p.decorator_names}
    secret_symbols |= {r.name for r in tpl.resources if r.full_type.lower() == "microsoft.web/sites/config"}
    # Variables are secret when their expression is (to a fixed point).
    changed = True
    while changed:
        changed = False
        for var in tpl.of("var"):
            refs = bicep.references(var.value_tokens)
            if var.name not in secret_symbols and (refs & secret_symbols or any(r.startswith("list") for r in refs)):
                secret_symbols.add(var.name)
                changed = True
    bad = []
    for output in tpl.of("output"):
        refs = bicep.references(output.value_tokens)
        if refs & secret_symbols or any(r.startswith("list") for r in refs) or "secure" in output.decorator_names:
            bad.append(output.name)
    return bad


def test_no_output_carries_a_secret() -> None:
    assert TPL.of("output"), "the template should tell the user what it created"
    assert _secret_outputs(TPL) == []


def _secret_behind(setting: str) -> bicep.Declaration:
    secret = key_vault_secret(TPL, SETTINGS[setting])
    assert secret is not None, f"{setting} should be a Key Vault reference to one of the vault's secrets"
    return secret


@pytest.mark.parametrize(
    ("setting", "parameter"),
    [("OperationSigningKey", "operationSigningKey"), ("HandoffSigningKey", "handoffSigningKey")],
)
def test_signing_keys_are_secure_generated_parameters_kept_in_key_vault(setting: str, parameter: str) -> None:
    key = TPL.symbol(parameter)
    assert "secure" in key.decorator_names
    assert "newGuid" in bicep.references(key.value_tokens)
    value = path(_secret_behind(setting).value, "properties", "value")
    assert isinstance(value, bicep.Raw) and value.single_identifier == parameter


def test_the_handoff_signing_key_is_kept_in_key_vault_too() -> None:
    # HandoffSigningKey's app setting is the handoff feature's; its secret is here already.
    key = TPL.symbol("handoffSigningKey")
    assert "secure" in key.decorator_names and "newGuid" in bicep.references(key.value_tokens)
    secrets = [r for r in TPL.resources if r.full_type == "Microsoft.KeyVault/vaults/secrets"]
    holders = [
        r for r in secrets if bicep.references(path(r.value, "properties", "value").tokens) == {"handoffSigningKey"}
    ]  # type: ignore[union-attr]
    assert len(holders) == 1


@pytest.mark.parametrize(
    ("setting", "site"), [("DirectLineSecret", "workerSiteName"), ("DirectLineClientSecret", "clientsSiteName")]
)
def test_each_direct_line_key_comes_from_its_own_site_through_key_vault(setting: str, site: str) -> None:
    value = path(_secret_behind(setting).value, "properties", "value")
    assert isinstance(value, bicep.Raw)
    assert bicep.references(value.tokens) >= {"directLine", "listChannelWithKeys", "filter", site}
    other = {"workerSiteName", "clientsSiteName"} - {site}
    assert not bicep.references(value.tokens) & other
    channel = TPL.symbol("directLine")
    assert channel.full_type == "Microsoft.BotService/botServices/channels"


def test_web_chat_pages_reach_the_token_function_only_from_the_origins_given() -> None:
    # CORS on the app: no browser page may call it unless the deployment names the page's origin.
    cors = path(function_app(TPL).value, "properties", "siteConfig", "cors", "allowedOrigins")
    assert isinstance(cors, bicep.Raw) and cors.single_identifier == "webChatOrigins"
    assert to_python(TPL, cors) == []
    # The same pages are the Direct Line "clients" site's trusted origins unless given apart.
    assert TPL.symbol("directLineTrustedOrigins").value_tokens and bicep.references(
        TPL.symbol("directLineTrustedOrigins").value_tokens
    ) == {"webChatOrigins"}


def setting_literal(name: str) -> object:
    return to_python(TPL, SETTINGS[name])


def test_no_secret_literal_in_the_template_or_parameters() -> None:
    text = TEMPLATE.read_text() + PARAMETERS.read_text()
    for marker in ("AccountKey=", "SharedAccessSignature", "-----BEGIN"):
        for line in text.splitlines():
            if marker in line:
                assert "${" in line, f"literal secret? {line.strip()}"


# -------------------------------------------------------------------- wiring


def test_flex_consumption_linux_plan() -> None:
    plan = resources_of_type(TPL, "Microsoft.Web/serverfarms")[0]
    assert to_python(TPL, path(plan.value, "sku")) == {"tier": "FlexConsumption", "name": "FC1"}
    assert path(plan.value, "properties", "reserved") is True
    app = function_app(TPL)
    assert path(app.value, "kind") == "functionapp,linux"
    deployment = path(app.value, "properties", "functionAppConfig", "deployment", "storage")
    assert path(deployment, "type") == "blobContainer"


def test_bot_messaging_endpoint_is_the_messages_function() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert TPL.resolve(TPL.symbol("messagesRoute").value) == f"{prefix}/messages"
    bot = TPL.symbol("bot")
    endpoint = path(bot.value, "properties", "endpoint")
    assert isinstance(endpoint, bicep.Raw)
    tok = next(t for t in endpoint.tokens if t.kind == "string")
    assert tok.parts[0] == "https://"
    assert [[t.value for t in i] for i in tok.interpolations] == [
        ["functionApp", ".", "properties", ".", "defaultHostName"],
        ["messagesRoute"],
    ]


def test_bot_is_global_with_f0_or_s1_and_direct_line_enabled() -> None:
    bot = TPL.symbol("bot")
    assert path(bot.value, "location") == "global"
    sku = TPL.symbol("botSku")
    allowed = next(args for name, args in sku.decorators if name == "allowed")
    assert {t.value for t in allowed if t.kind == "string"} == {"F0", "S1"}
    channel = TPL.symbol("directLine")
    assert path(channel.value, "name") == "DirectLineChannel"
    sites = to_python(TPL, path(channel.value, "properties", "properties", "sites"))
    assert isinstance(sites, list) and sites[0]["isEnabled"] is True and sites[0]["isV3Enabled"] is True


def test_bot_identity_is_a_user_assigned_managed_identity_on_the_app() -> None:
    bot_props = path(TPL.symbol("bot").value, "properties")
    assert path(bot_props, "msaAppType") == "UserAssignedMSI"
    assert SETTINGS["MicrosoftAppType"] == "UserAssignedMSI"
    assert SETTINGS["MicrosoftAppPassword"] == ""
    for setting, prop in (("MicrosoftAppId", "msaAppId"), ("MicrosoftAppTenantId", "msaAppTenantId")):
        app_value, bot_value = SETTINGS[setting], path(bot_props, prop)
        assert isinstance(app_value, bicep.Raw) and isinstance(bot_value, bicep.Raw)
        assert [t.value for t in app_value.tokens] == [t.value for t in bot_value.tokens]
        assert bicep.references(app_value.tokens) == {"botIdentity"}
    identity = path(function_app(TPL).value, "identity")
    assert "UserAssigned" in str(path(identity, "type"))
    assigned = path(identity, "userAssignedIdentities")
    assert isinstance(assigned, bicep.BObject) and len(assigned.entries) == 1  # '${botIdentity.id}': {}
    assert "botIdentity" in bicep.references(function_app(TPL).value_tokens)


def test_cosmos_is_serverless_keyless_and_the_app_has_a_data_role() -> None:
    cosmos = TPL.symbol("cosmos")
    props = path(cosmos.value, "properties")
    assert to_python(TPL, path(props, "capabilities")) == [{"name": "EnableServerless"}]
    assert path(props, "disableLocalAuth") is True
    assert SETTINGS["CosmosDbAuthKey"] == ""
    role = resources_of_type(TPL, "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")[0]
    principal = path(role.value, "properties", "principalId")
    assert isinstance(principal, bicep.Raw)
    assert [t.value for t in principal.tokens] == ["functionApp", ".", "identity", ".", "principalId"]
    assert "SystemAssigned" in str(path(function_app(TPL).value, "identity", "type"))
    role_id = TPL.resolve(TPL.symbol("cosmosDataContributorRoleId").value)
    assert role_id == "00000000-0000-0000-0000-000000000002"  # Cosmos DB Built-in Data Contributor


def test_application_insights_takes_only_entra_id_telemetry_from_the_apps_identity() -> None:
    insights = resources_of_type(TPL, "Microsoft.Insights/components")[0]
    assert path(insights.value, "properties", "DisableLocalAuth") is True
    # The host authenticates with the system-assigned identity...
    assert SETTINGS["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert "SystemAssigned" in str(path(function_app(TPL).value, "identity", "type"))
    # ...which holds Monitoring Metrics Publisher on the component.
    roles = [
        r
        for r in resources_of_type(TPL, "Microsoft.Authorization/roleAssignments")
        if "monitoringMetricsPublisherRoleId" in bicep.references(r.value_tokens)
    ]
    assert len(roles) == 1
    role = roles[0]
    assert TPL.resolve(TPL.symbol("monitoringMetricsPublisherRoleId").value) == "3913510d-42f4-4e42-8a64-420c390055eb"
    scope = path(role.value, "scope")
    assert isinstance(scope, bicep.Raw) and scope.single_identifier == insights.name
    principal = path(role.value, "properties", "principalId")
    assert isinstance(principal, bicep.Raw)
    assert [t.value for t in principal.tokens] == ["functionApp", ".", "identity", ".", "principalId"]
    assert path(role.value, "properties", "principalType") == "ServicePrincipal"
    # The connection string (where telemetry goes) stays beside it.
    connection = SETTINGS["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert isinstance(connection, bicep.Raw) and bicep.references(connection.tokens) == {insights.name}
