"""What `func azure functionapp publish` uploads, and whether the Functions host can index
it: the payload is built the way Core Tools builds it (every file minus .funcignore, read
as Core Tools reads it), then a fresh virtualenv gets `pip install -r requirements.txt`
and nothing else, imports function_app from the payload with the app settings set, and
reports the functions as the host sees them (get_function_json())."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import textwrap
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.project import ROOT, FuncIgnore, code_settings, payload_files

# Top-level paths that are local tooling, tests or infrastructure: never deployed.
LOCAL_ONLY = ("localdev/", "tests/", "bench/", "infra/", "node_modules/", ".venv/", ".localdev/", ".ci/")
LOCAL_ONLY_FILES = ("local.settings.json", "Makefile", "package.json", "package-lock.json", "requirements-dev.txt")

# Dummy values: importing must not contact anything.
DUMMY_ENV = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": (
        "DefaultEndpointsProtocol=https;AccountName=dummy;AccountKey=ZHVtbXk=;EndpointSuffix=core.windows.net"
    ),
    "MicrosoftAppType": "UserAssignedMSI",
    "MicrosoftAppId": "00000000-0000-0000-0000-000000000001",
    "MicrosoftAppTenantId": "00000000-0000-0000-0000-000000000002",
    "MicrosoftAppPassword": "",
    "CosmosDbEndpoint": "https://dummy.documents.azure.invalid:443/",
    "CosmosDbAuthKey": "",
    "DirectLineEndpoint": "https://directline.invalid/v3/directline",
    "DirectLineSecret": "dummy-direct-line-secret",
    "OperationSigningKey": "dummy-signing-key-dummy-signing-key-0123",
    "HandoffSigningKey": "dummy-handoff-key-dummy-handoff-key-0123",
}

PROBE = textwrap.dedent(
    """
    import importlib, json, sys, pathlib, traceback
    root = pathlib.Path.cwd()
    out = {"functions": [], "import_errors": {}, "outside_payload": []}
    import function_app
    for fn in function_app.app.get_functions():
        out["functions"].append({"name": fn.get_function_name(), **json.loads(fn.get_function_json())})
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py")
    )
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            out["import_errors"][name] = traceback.format_exc(limit=3)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        top = name.split(".")[0]
        if (root / top).exists() or (root / f"{top}.py").exists():
            if file and not pathlib.Path(file).resolve().is_relative_to(root.resolve()):
                out["outside_payload"].append(f"{name}: {file}")
    out["modules"] = modules
    print("PROBE:" + json.dumps(out))
    """
)


def test_funcignore_is_read_as_core_tools_reads_it() -> None:
    parser = FuncIgnore("tests/\n__pycache__/\n.git*\nMakefile\n*.log\n!keep.log\n")
    assert not parser.accepts("tests/test_x.py")
    assert parser.accepts("services/tests/x.py")  # anchored at the root, unlike git
    assert not parser.accepts("__pycache__/a.pyc")
    assert parser.accepts("services/__pycache__/a.pyc")  # only the top-level one
    assert not parser.accepts(".gitignore") and not parser.accepts(".github/workflows/x.yml")
    assert not parser.accepts("Makefile")
    assert not parser.accepts("x.log") and parser.accepts("keep.log")


def test_local_settings_and_git_folders_never_leave_the_machine(tmp_path: Path) -> None:
    (tmp_path / ".funcignore").write_text("")
    for rel in ("function_app.py", "local.settings.json", "sub/local.settings.json", ".git/HEAD", "a/.vscode/x"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert payload_files(tmp_path) == ["function_app.py"]


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("payload") / "app"
    for rel in payload_files(ROOT):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    return target


def test_payload_holds_the_app(payload: Path) -> None:
    for rel in ("function_app.py", "host.json", "requirements.txt"):
        assert (payload / rel).is_file(), f"{rel} is not published"
    for package in ("services", "handlers", "bot_logic"):
        assert (payload / package / "__init__.py").is_file(), f"{package}/ is not published"


def test_payload_holds_nothing_local_or_test_only(payload: Path) -> None:
    files = [p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file()]
    leaked = [
        f for f in files if f.startswith(LOCAL_ONLY) or f in LOCAL_ONLY_FILES or f.endswith("local.settings.json")
    ]
    leaked += [f for f in files if "/node_modules/" in f or f.startswith((".git/", ".vscode/"))]
    assert not leaked, f"published but local-only: {leaked[:20]}"


@pytest.fixture(scope="module")
def probe(payload: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_dir = tmp_path_factory.mktemp("payload-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=payload,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stderr[-3000:]}"
    settings_env = {name: s.default for name, s in code_settings().items() if s.default is not None}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(env_dir),
        "NO_PROXY": "*",
        **settings_env,
        **DUMMY_ENV,
    }
    result = subprocess.run(
        [str(python), "-E", "-s", "-c", PROBE],
        cwd=payload,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"importing function_app failed:\n{result.stderr[-3000:]}"
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE:"))
    return dict(json.loads(line.removeprefix("PROBE:")))


def _function(probe: dict[str, Any], name: str) -> dict[str, Any]:
    functions = {f["name"]: f for f in probe["functions"]}
    assert name in functions, f"the host would not index {name}; it sees {sorted(functions)}"
    return functions[name]


def _binding(function: dict[str, Any], binding_type: str) -> dict[str, Any]:
    found = [b for b in function["bindings"] if b["type"] == binding_type]
    assert len(found) == 1, function["bindings"]
    return found[0]


@pytest.mark.slow
def test_messages_is_an_anonymous_post_route(probe: dict[str, Any]) -> None:
    function = _function(probe, "messages")
    trigger = _binding(function, "httpTrigger")
    assert trigger["route"] == "messages"
    assert [m.upper() for m in trigger["methods"]] == ["POST"]
    assert trigger["authLevel"].upper() == "ANONYMOUS"
    assert trigger["direction"].upper() == "IN"
    assert _binding(function, "http")["direction"].upper() == "OUT"


@pytest.mark.slow
def test_operations_worker_listens_on_the_configured_queue(probe: dict[str, Any]) -> None:
    trigger = _binding(_function(probe, "operations_worker"), "queueTrigger")
    assert trigger["queueName"] == "%OperationsQueueName%"
    assert trigger["connection"] == "AzureWebJobsStorage"


@pytest.mark.slow
def test_the_timers_schedules_and_no_run_on_startup(probe: dict[str, Any]) -> None:
    schedules = {
        function["name"]: _binding(function, "timerTrigger")
        for function in probe["functions"]
        if any(b["type"] == "timerTrigger" for b in function["bindings"])
    }
    assert {name: trigger["schedule"] for name, trigger in schedules.items()} == {
        "sweeper": "%SweepSchedule%",
        "transcript_cleanup": "0 17 * * * *",  # hourly
    }
    for trigger in schedules.values():
        assert not trigger.get("runOnStartup", False), "runOnStartup is discouraged in production"


@pytest.mark.slow
def test_health_is_an_anonymous_get_for_probes(probe: dict[str, Any]) -> None:
    trigger = _binding(_function(probe, "health"), "httpTrigger")
    assert (trigger["route"], [m.upper() for m in trigger["methods"]]) == ("health", ["GET"])
    assert trigger["authLevel"].upper() == "ANONYMOUS"


@pytest.mark.slow
def test_the_directline_token_function_is_an_anonymous_post_for_pages(probe: dict[str, Any]) -> None:
    trigger = _binding(_function(probe, "directline_token"), "httpTrigger")
    assert (trigger["route"], [m.upper() for m in trigger["methods"]]) == ("directline/token", ["POST"])
    assert trigger["authLevel"].upper() == "ANONYMOUS"


@pytest.mark.slow
def test_notifications_and_transcripts_need_a_function_key(probe: dict[str, Any]) -> None:
    notify = _binding(_function(probe, "notify"), "httpTrigger")
    assert (notify["route"], [m.upper() for m in notify["methods"]]) == ("notify", ["POST"])
    transcripts = _binding(_function(probe, "transcripts"), "httpTrigger")
    assert (transcripts["route"], [m.upper() for m in transcripts["methods"]]) == (
        "transcripts/{conversationId}",
        ["GET"],
    )
    assert notify["authLevel"].upper() == transcripts["authLevel"].upper() == "FUNCTION"
    events = _binding(_function(probe, "external_events"), "queueTrigger")
    assert (events["queueName"], events["connection"]) == ("%ExternalEventsQueueName%", "AzureWebJobsStorage")


@pytest.mark.slow
def test_only_the_expected_functions_are_indexed(probe: dict[str, Any]) -> None:
    names = sorted(f["name"] for f in probe["functions"])
    assert names == sorted(
        [
            "messages",
            "operations_worker",
            "sweeper",
            "transcripts",
            "transcript_cleanup",
            "notify",
            "external_events",
            "health",
            "directline_token",
        ]
    )


@pytest.mark.slow
def test_every_published_module_imports_with_requirements_txt_only(probe: dict[str, Any]) -> None:
    assert "function_app" in probe["modules"]
    assert probe["import_errors"] == {}, "\n".join(f"{k}:\n{v}" for k, v in probe["import_errors"].items())
    assert probe["outside_payload"] == []


# Routes that authenticate their callers another way or tell nothing private; every other route needs a key.
ANONYMOUS_ROUTES = {"messages", "health", "directline_token"}


@pytest.mark.slow
def test_only_routes_that_authenticate_otherwise_are_anonymous(probe: dict[str, Any]) -> None:
    anonymous = {
        function["name"]
        for function in probe["functions"]
        for binding in function["bindings"]
        if binding["type"] == "httpTrigger" and binding["authLevel"].upper() == "ANONYMOUS"
    }
    assert anonymous == ANONYMOUS_ROUTES


def test_a_new_route_needs_a_function_key_unless_it_says_otherwise() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    [app] = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("func.FunctionApp", "FunctionApp")
    ]
    defaults = {keyword.arg: ast.unparse(keyword.value) for keyword in app.keywords}
    assert defaults.get("http_auth_level") == "func.AuthLevel.FUNCTION"
