"""The two automated ways to deploy, read as their tools read them: azure.yaml and
infra/main.parameters.json as the Azure Developer CLI reads them, and the GitHub Actions workflow.
Each must find the template, the app and the values it needs, and docs/deploy.md must name every
value a user sets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy import bicep
from tests.deploy.project import PARAMETERS, ROOT, TEMPLATE, function_app, path, template

TPL = template()
AZURE_YAML: dict[str, Any] = yaml.safe_load((ROOT / "azure.yaml").read_text())
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "deploy.yml"
WORKFLOW: dict[str, Any] = yaml.safe_load(WORKFLOW_FILE.read_text())
DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text()
PARAMETER_MAPPINGS: dict[str, Any] = json.loads(PARAMETERS.read_text())["parameters"]
_ENV_REFERENCE = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)\}$")


# --------------------------------------------------------------------- azd


def _service() -> tuple[str, dict[str, Any]]:
    services = AZURE_YAML["services"]
    assert len(services) == 1, "one Function App, one service"
    return next(iter(services.items()))


def test_azure_yaml_deploys_this_folder_as_a_python_function_app() -> None:
    _, service = _service()
    assert service["host"] == "function"
    assert service["language"] in ("python", "py")
    assert (ROOT / service["project"]).resolve() == ROOT
    assert (ROOT / service["project"] / "function_app.py").is_file()


def test_azure_yaml_points_at_the_bicep_template_and_its_parameters_file() -> None:
    infra = AZURE_YAML.get("infra", {})
    assert infra.get("provider", "bicep") == "bicep"
    folder = ROOT / infra.get("path", "infra")
    module = infra.get("module", "main")
    assert folder / f"{module}.bicep" == TEMPLATE
    # azd reads <module>.parameters.json beside the template (a .bicepparam would take precedence).
    assert folder / f"{module}.parameters.json" == PARAMETERS
    assert not (folder / f"{module}.bicepparam").exists()


def test_the_function_app_carries_the_tag_azd_finds_it_by() -> None:
    name, _ = _service()
    tags = path(function_app(TPL).value, "tags")
    assert isinstance(tags, bicep.Raw)
    # union(tags, { 'azd-service-name': azdServiceName })
    assert "union" in bicep.references(tags.tokens)
    pairs = [t for t in tags.tokens if t.kind != "newline"]
    key_index = next(i for i, t in enumerate(pairs) if t.is_plain_string and t.value == "azd-service-name")
    value = pairs[key_index + 2]
    assert value.value == "azdServiceName"
    assert TPL.resolve(TPL.symbol("azdServiceName").value) == name


def test_every_top_level_resource_gets_the_azd_environment_tag() -> None:
    untagged = [
        r.name
        for r in TPL.of("resource")
        if "location" in r.body.entries and "parent" not in r.body.entries and "tags" not in r.body.entries
    ]
    assert untagged == []
    tags_var = TPL.symbol("tags")
    assert "environmentName" in bicep.references(tags_var.value_tokens)
    assert any(t.value == "azd-env-name" for t in tags_var.value_tokens if t.kind == "string")


def _mapped_variable(name: str) -> str:
    value = PARAMETER_MAPPINGS[name]["value"]
    m = _ENV_REFERENCE.match(value) if isinstance(value, str) else None
    assert m, f"main.parameters.json: {name} should be exactly one azd environment reference, ${{NAME}}"
    return m.group(1)


def test_the_parameters_file_only_maps_azd_environment_values_to_declared_parameters() -> None:
    # A literal value here would be applied by azd but not by `az deployment group create`,
    # which passes name=value instead: defaults belong in main.bicep, where both see them.
    declared = {p.name: p for p in TPL.of("param")}
    variables = {}
    for name in PARAMETER_MAPPINGS:
        assert name in declared, f"main.parameters.json maps {name}, which main.bicep does not declare"
        variables[name] = _mapped_variable(name)
        # Unset values are left out by azd, so every mapped parameter needs a default.
        assert declared[name].value_tokens, f"{name} has no default in main.bicep"
    assert len(set(variables.values())) == len(variables), "one azd value per parameter"
    assert variables["environmentName"] == "AZURE_ENV_NAME"
    assert variables["location"] == "AZURE_LOCATION"


def test_every_azd_value_is_documented_with_its_parameter() -> None:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| `([A-Za-z]+)` \|", DEPLOY_DOC, re.MULTILINE)
    documented = dict(rows)
    for name in PARAMETER_MAPPINGS:
        variable = _mapped_variable(name)
        assert documented.get(variable) == name, f"docs/deploy.md: no row `{variable}` | `{name}`"


def test_the_preprovision_hook_keeps_one_operation_signing_key() -> None:
    variable = _mapped_variable("operationSigningKey")
    assert "secure" in TPL.symbol("operationSigningKey").decorator_names
    hook = AZURE_YAML["hooks"]["preprovision"]
    for shell in ("posix", "windows"):
        script = hook[shell]["run"]
        # Sets the value only when it is not set yet, so later provisions keep the same key.
        assert f"azd env set {variable} " in script
        assert re.search(rf"(-z \"\$\{{{variable}:-\}}\"|-not \$env:{variable})", script), script
    # The generated key satisfies the parameter's @minLength (64 hex characters).
    min_length = next(args for name, args in TPL.symbol("operationSigningKey").decorators if name == "minLength")
    assert int(min_length[0].value) <= 64
    assert "token_hex(32)" in hook["posix"]["run"] and "GetBytes(32)" in hook["windows"]["run"]


# --------------------------------------------------------- GitHub Actions


def _triggers() -> dict[str, Any]:
    return WORKFLOW.get("on", WORKFLOW.get(True))  # type: ignore[call-overload]  # YAML 1.1 reads `on` as true


def _steps() -> list[dict[str, Any]]:
    jobs = WORKFLOW["jobs"]
    assert len(jobs) == 1
    return next(iter(jobs.values()))["steps"]


def _step_index(predicate: Any, what: str) -> int:
    for index, step in enumerate(_steps()):
        if predicate(step):
            return index
    raise AssertionError(f"the workflow has no step that {what}")


def _runs(fragment: str) -> Any:
    return lambda step: fragment in step.get("run", "")


def test_the_workflow_runs_only_when_started_by_hand_and_once_configured() -> None:
    assert set(_triggers()) == {"workflow_dispatch"}
    job = next(iter(WORKFLOW["jobs"].values()))
    assert job["if"] == "vars.AZURE_CLIENT_ID != ''"


def test_the_workflow_signs_in_with_openid_connect() -> None:
    assert WORKFLOW["permissions"] == {"id-token": "write", "contents": "read"}
    login = _steps()[_step_index(lambda s: s.get("uses", "").startswith("azure/login@"), "uses azure/login")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}  # no `creds`: no stored secret
    for value in login["with"].values():
        assert value.startswith("${{ vars.AZURE_")


def test_the_workflow_compiles_the_template_before_deploying_it_and_publishes_last() -> None:
    build = _step_index(_runs("az bicep build --file infra/main.bicep"), "compiles infra/main.bicep")
    deploy = _step_index(_runs("az deployment group create"), "deploys the template")
    publish = _step_index(_runs("func azure functionapp publish"), "publishes the app")
    assert build < deploy < publish
    steps = _steps()
    assert "az bicep lint --file infra/main.bicep" in steps[build]["run"]
    # What the compiler built is what gets deployed.
    assert '--outfile "$RUNNER_TEMP/main.json"' in steps[build]["run"]
    assert '--template-file "$RUNNER_TEMP/main.json"' in steps[deploy]["run"]
    assert "--python" in steps[publish]["run"]
    assert (ROOT / "infra" / "main.bicep").is_file()


@pytest.mark.parametrize(
    ("variable", "parameter"),
    [("OPERATION_SIGNING_KEY", "operationSigningKey"), ("HANDOFF_SIGNING_KEY", "handoffSigningKey")],
)
def test_the_workflow_passes_the_signing_keys_from_secrets_only(variable: str, parameter: str) -> None:
    deploy = _steps()[_step_index(_runs("az deployment group create"), "deploys the template")]
    assert deploy["env"][variable] == f"${{{{ secrets.{variable} }}}}"
    assert f"{parameter}=${variable}" in deploy["run"]
    text = WORKFLOW_FILE.read_text()
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"OPERATION_SIGNING_KEY", "HANDOFF_SIGNING_KEY"}, (
        "the signing keys are the workflow's only secrets"
    )


@pytest.mark.parametrize("name", sorted(set(re.findall(r"\b(?:vars|secrets)\.([A-Z_]+)", WORKFLOW_FILE.read_text()))))
def test_every_variable_and_secret_the_workflow_reads_is_documented(name: str) -> None:
    assert re.search(rf"^ *\| `{name}` \| (variable|secret)", DEPLOY_DOC, re.MULTILINE), (
        f"docs/deploy.md's GitHub Actions table has no row for `{name}`"
    )


_PINNED_ACTION = re.compile(r"^ *(?:- )?uses: ([\w-]+/[\w-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")


def test_every_action_is_pinned_to_a_commit_with_its_release_tag_beside_it() -> None:
    used = [step["uses"] for step in _steps() if "uses" in step]
    assert used
    lines = [line for line in WORKFLOW_FILE.read_text().splitlines() if "uses:" in line]
    assert len(lines) == len(used)
    for line in lines:
        assert _PINNED_ACTION.match(line), f"not pinned to a full commit SHA with its tag: {line.strip()}"


def test_the_tools_the_workflow_installs_are_pinned_to_exact_versions() -> None:
    env = next(iter(WORKFLOW["jobs"].values()))["env"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", env["BICEP_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", env["CORE_TOOLS_VERSION"])
    build = _steps()[_step_index(_runs("az bicep build"), "compiles the template")]["run"]
    assert 'az bicep install --version "$BICEP_VERSION"' in build
    install = _steps()[_step_index(_runs("azure-functions-core-tools"), "installs Core Tools")]["run"]
    assert '"azure-functions-core-tools@$CORE_TOOLS_VERSION"' in install


def test_the_workflow_deploys_through_a_github_environment() -> None:
    job = next(iter(WORKFLOW["jobs"].values()))
    assert job["environment"] == "production"
    # The federated credential the docs create trusts that environment, not a branch.
    assert "repo:<owner>/<repo>:environment:production" in DEPLOY_DOC


# ------------------------------------------------------------- documents


@pytest.mark.parametrize(
    "source",
    ["infra/main.bicep", "azure.yaml", ".github/workflows/deploy.yml", "README.md"],
)
def test_the_deployment_documents_referred_to_exist(source: str) -> None:
    text = (ROOT / source).read_text()
    documents = set(re.findall(r"\bdocs/[\w.-]+\.md\b", text))
    assert "docs/deploy.md" in documents
    for document in documents:
        assert (ROOT / document).is_file(), f"{source} refers to {document}, which does not exist"
    # `docs/deploy.md, "Section"` names a heading of that document.
    headings = [line.lstrip("#").strip() for line in DEPLOY_DOC.splitlines() if line.startswith("#")]
    for section in re.findall(r'docs/deploy\.md, "([^"]+)"', text.replace("\n//", "").replace("\n#", "")):
        assert any(h.startswith(section) for h in headings), f"{source}: docs/deploy.md has no section {section!r}"
