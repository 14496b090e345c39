"""What the deploy checks read from the project: settings the code reads, the sample,
the settings table, the Bicep template's app settings, and the publish payload."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.deploy import bicep

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = ROOT / "services" / "settings.py"
SAMPLE = ROOT / "local.settings.json.sample"
TEMPLATE = ROOT / "infra" / "main.bicep"
PARAMETERS = ROOT / "infra" / "main.parameters.json"
README = ROOT / "README.md"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# Read by the Functions host or the platform, not by services/settings.py.
HOST_ONLY = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "AzureWebJobsFeatureFlags",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        # Read by the Python worker and the OpenTelemetry distro it configures.
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    }
)
HOST_ONLY_PREFIXES = ("WEBSITE_", "AzureWebJobsStorage__", "AzureFunctionsJobHost__")

_NO_DEFAULT = object()


def is_host_only(name: str) -> bool:
    return name in HOST_ONLY or name.startswith(HOST_ONLY_PREFIXES)


@dataclass(frozen=True)
class CodeSetting:
    name: str
    default: str | None  # None: required, no default


def code_settings() -> dict[str, CodeSetting]:
    """Every setting services/settings.py reads, with its default, from the source (ast).

    A read is a call that passes the environment mapping followed by a string literal
    (`_text(env, "Name", "default")`, `_parsed(env, "Name", ...)`), or `env.get("Name", ...)`
    / `env["Name"]` on the mapping."""
    tree = ast.parse(SETTINGS_MODULE.read_text())
    env_names = {"env", "environ", "environment"}
    found: dict[str, CodeSetting] = {}
    # Module-level string constants (DEFAULT_EXPIRY_NOTICE_TEXT = "..."), which a default may name.
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def const(node: ast.AST | None) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return _NO_DEFAULT

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and isinstance(func.value, ast.Name):
                if func.value.id in env_names and node.args and isinstance(const(node.args[0]), str):
                    default = const(node.args[1]) if len(node.args) > 1 else None
                    name = str(const(node.args[0]))
                    found[name] = CodeSetting(name, default if isinstance(default, str) else None)
                continue
            args = node.args
            for i, arg in enumerate(args[:-1]):
                if isinstance(arg, ast.Name) and arg.id in env_names and isinstance(const(args[i + 1]), str):
                    name = str(const(args[i + 1]))
                    default = const(args[i + 2]) if i + 2 < len(args) else None
                    found[name] = CodeSetting(name, default if isinstance(default, str) else None)
                    break
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in env_names:
            name = const(node.slice)
            if isinstance(name, str):
                found.setdefault(name, CodeSetting(name, None))
    return found


def sample_values() -> dict[str, str]:
    return dict(json.loads(SAMPLE.read_text())["Values"])


_TABLE_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def settings_table() -> tuple[Path, dict[str, str]]:
    """(file, {setting: row}) of docs/configuration.md's settings table."""
    code = set(code_settings())
    for path in (CONFIGURATION_DOC,):
        # Markdown tables: runs of lines starting with '|'. The settings table is the one
        # naming the most settings the code reads (a file can hold other tables).
        tables: list[dict[str, str]] = [{}]
        for line in path.read_text().splitlines():
            if not line.strip().startswith("|"):
                if tables[-1]:
                    tables.append({})
                continue
            if m := _TABLE_ROW.match(line.strip()):
                tables[-1][m.group(1)] = line
        best = max(tables, key=lambda rows: len(code & set(rows)))
        if code & set(best):
            return path, best
    raise AssertionError("docs/configuration.md has no settings table (| `Name` | ... |).")


def deploy_doc_settings() -> set[str]:
    """Names in the first column of docs/deploy.md's tables (the app settings only a deployment sets)."""
    return {m.group(1) for line in DEPLOY_DOC.read_text().splitlines() if (m := _TABLE_ROW.match(line.strip()))}


def template() -> bicep.Template:
    return bicep.parse(TEMPLATE)


def resources_of_type(tpl: bicep.Template, full_type: str) -> list[bicep.Declaration]:
    return [r for r in tpl.resources if r.full_type.lower() == full_type.lower()]


def app_settings(tpl: bicep.Template) -> dict[str, bicep.Value]:
    """The app settings the template sets: the sites/config 'appsettings' resource, and any
    siteConfig.appSettings list on the Function App."""
    settings: dict[str, bicep.Value] = {}
    for res in resources_of_type(tpl, "Microsoft.Web/sites/config"):
        if res.body.entries.get("name") == "appsettings":
            props = res.body.entries.get("properties")
            assert isinstance(props, bicep.BObject), f"line {res.line}: appsettings properties must be an object"
            settings.update(props.entries)
    for site in resources_of_type(tpl, "Microsoft.Web/sites"):
        props = site.body.entries.get("properties")
        site_config = props.entries.get("siteConfig") if isinstance(props, bicep.BObject) else None
        listed = site_config.entries.get("appSettings") if isinstance(site_config, bicep.BObject) else None
        for item in listed if isinstance(listed, list) else []:
            assert isinstance(item, bicep.BObject)
            name = item.entries.get("name")
            assert isinstance(name, str), "siteConfig.appSettings names must be literal"
            settings[name] = item.entries.get("value")
    return settings


def function_app(tpl: bicep.Template) -> bicep.Declaration:
    sites = resources_of_type(tpl, "Microsoft.Web/sites")
    assert len(sites) == 1, "the template should declare exactly one Function App"
    return sites[0]


def key_vault_secret(tpl: bicep.Template, value: bicep.Value) -> bicep.Declaration | None:
    """The secret resource an app setting refers to, when its value is exactly
    '@Microsoft.KeyVault(SecretUri=${vault::secret.properties.secretUri})'; None otherwise."""
    if not isinstance(value, bicep.Raw) or len(value.tokens) != 1 or value.tokens[0].kind != "string":
        return None
    token = value.tokens[0]
    if token.parts != ["@Microsoft.KeyVault(SecretUri=", ")"] or len(token.interpolations) != 1:
        return None
    words = [t.value for t in token.interpolations[0]]
    if len(words) != 7 or words[1] != "::" or words[3:] != [".", "properties", ".", "secretUri"]:
        return None
    secret = tpl.symbol(words[2])
    vault = tpl.symbol(words[0])
    if secret.parent is not vault or secret.full_type != "Microsoft.KeyVault/vaults/secrets":
        return None
    return secret


def path(obj: bicep.Value, *keys: str) -> bicep.Value:
    """obj.keys[0].keys[1]... through parsed objects; AssertionError naming the missing key."""
    current = obj
    for key in keys:
        assert isinstance(current, bicep.BObject), f"expected an object before {key!r}"
        assert key in current.entries, f"missing {key!r} (have {sorted(current.entries)})"
        current = current.entries[key]
    return current


def to_python(tpl: bicep.Template, value: bicep.Value) -> object:
    """Literal objects/arrays as plain Python, references resolved; Raw stays Raw."""
    value = tpl.resolve(value)
    if isinstance(value, bicep.BObject):
        return {k: to_python(tpl, v) for k, v in value.entries.items()}
    if isinstance(value, list):
        return [to_python(tpl, v) for v in value]
    return value


def setting_value(tpl: bicep.Template, value: bicep.Value) -> str | None:
    """The string an app setting gets with the template's defaults, where it can be told
    offline: literals, param/var references, string(param) and `flag ? 'a' : 'b'`."""
    value = tpl.resolve(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, bicep.Raw):
        real = [t for t in value.tokens if t.kind != "newline"]
        if [t.value for t in real[:2]] == ["string", "("] and len(real) == 4 and real[3].value == ")":
            return setting_value(tpl, bicep.Raw([real[2]]))
        if len(real) == 5 and real[1].value == "?" and real[3].value == ":":
            flag = tpl.resolve(bicep.Raw([real[0]]))
            if isinstance(flag, bool) and real[2].is_plain_string and real[4].is_plain_string:
                return real[2].value if flag else real[4].value
    return None


# ------------------------------------------------------------------ publish payload


class FuncIgnore:
    """.funcignore as Azure Functions Core Tools reads it (Common/GitIgnoreParser.cs, a port
    of the npm gitignore-parser): each pattern is a regex anchored at the START of the path
    relative to the project root ('*' = one path segment's characters, '**' = anything), so
    `tests/` excludes only the top-level tests folder and `__pycache__/` only a top-level one.
    `!pattern` re-includes. FileSystemHelpers.GetLocalFiles also always skips folders named
    .git and .vscode and files named .funcignore, .gitignore, local.settings.json and
    project.lock.json, at any depth."""

    ALWAYS_SKIPPED_DIRS = frozenset({".git", ".vscode"})
    ALWAYS_SKIPPED_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})

    def __init__(self, text: str) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            target = positive
            if line.startswith("!"):
                target, line = negative, line[1:]
            if line.startswith("/"):
                line = line[1:]
            target.append(line)
        self._positive = self._compile(sorted(positive))
        self._negative = self._compile(sorted(negative))

    @staticmethod
    def _pattern(pattern: str) -> str:
        escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(), pattern)
        return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")

    @classmethod
    def _compile(cls, patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return re.compile("$^")
        return re.compile("^((" + ")|(".join(cls._pattern(p) for p in patterns) + "))")

    def accepts(self, relative: str) -> bool:
        return bool(self._negative.match(relative)) or not self._positive.match(relative)


def payload_files(root: Path = ROOT) -> list[str]:
    """Relative paths (with '/') that `func azure functionapp publish` would zip from root."""
    ignore_file = root / ".funcignore"
    parser = FuncIgnore(ignore_file.read_text()) if ignore_file.exists() else FuncIgnore("")
    out: list[str] = []

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                if entry.name.lower() not in FuncIgnore.ALWAYS_SKIPPED_DIRS:
                    walk(entry)
            elif entry.is_file():
                if entry.name.lower() in FuncIgnore.ALWAYS_SKIPPED_FILES:
                    continue
                relative = entry.relative_to(root).as_posix()
                if parser.accepts(relative):
                    out.append(relative)

    walk(root)
    return out
