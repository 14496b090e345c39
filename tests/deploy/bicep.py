"""infra/main.bicep as data, read through tree-sitter-bicep's grammar (requirements-dev.txt).

No Bicep compiler runs offline here (it ships on NuGet; the GitHub Actions workflow compiles the
template), so the deploy tests read the template themselves. The grammar gives the syntax tree;
this module turns it into what the tests ask about: the declarations with their decorators, each
value as a literal where it is one (objects, arrays, strings, numbers, booleans) and as a Raw
expression where it is computed, the resources with their nested children, and which names each
expression refers to. A syntax error, or a statement this reader does not know, raises
BicepError with its line, so a new construct makes the tests ask for attention instead of passing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import tree_sitter
import tree_sitter_bicep

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


class BicepError(ValueError):
    """The template is malformed (or uses a construct this reader does not know)."""


@dataclass
class Token:
    kind: str  # ident, number, string, op
    value: str
    line: int
    # ref, call, member (after '.'), child (after '::'), key (object key), local (loop or lambda
    # variable), declaration (a nested resource's name), keyword; '' for numbers, strings, operators.
    role: str = ""
    # Strings: the literal pieces and the tokens of each ${...} interpolation.
    parts: list[str] = field(default_factory=list)
    interpolations: list[list[Token]] = field(default_factory=list)

    @property
    def is_plain_string(self) -> bool:
        return self.kind == "string" and not self.interpolations


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPE = re.compile(r"\\(u\{([0-9A-Fa-f]{1,6})\}|.)")
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _unescape(raw: str, line: int) -> str:
    def one(m: re.Match[str]) -> str:
        if m[2]:
            return chr(int(m[2], 16))
        if m[1] not in _ESCAPES:
            raise BicepError(f"line {line}: unknown escape \\{m[1]}")
        return _ESCAPES[m[1]]

    return _ESCAPE.sub(one, raw)


def _string_token(node: tree_sitter.Node) -> Token:
    line = node.start_point[0] + 1
    text = node.text.decode()  # type: ignore[union-attr]
    if text.startswith("'''"):  # multi-line: no escapes, no interpolation
        return Token("string", text[3:-3], line, parts=[text[3:-3]])
    parts: list[str] = []
    interpolations: list[list[Token]] = []
    cursor = node.start_byte + 1  # after the opening quote
    source = node.text or b""
    for child in node.named_children:
        if child.type == "interpolation":
            raw = source[cursor - node.start_byte : child.start_byte - node.start_byte].decode()
            parts.append(_unescape(raw, line))
            inner = [c for c in child.named_children if c.type != "comment"]
            if not inner:
                raise BicepError(f"line {line}: empty ${{}} interpolation")
            interpolations.append([t for c in inner for t in _tokens(c)])
            cursor = child.end_byte
    parts.append(_unescape(source[cursor - node.start_byte : -1].decode(), line))
    return Token("string", "".join(parts), line, parts=parts, interpolations=interpolations)


def _role(node: tree_sitter.Node) -> str:
    parent = node.parent
    if node.type == "property_identifier":
        return "member"
    if node.type in ("loop_variable", "loop_enumerator"):
        return "local"
    if parent is None:
        return "ref"
    siblings = parent.children
    if parent.type == "resource_expression" and siblings[0] != node:
        return "child"
    if parent.type == "call_expression" and parent.child_by_field_name("function") == node:
        return "call"
    if parent.type == "object_property" and siblings[0] == node:
        return "key"
    if parent.type == "resource_declaration":
        return "declaration"
    before_arrow = parent.type == "lambda_expression" and node.end_byte <= _first(parent, "=>").start_byte
    before_in = parent.type == "for_statement" and node.end_byte <= _first(parent, "in").start_byte
    if before_arrow or before_in or parent.type == "lambda_parameters":
        return "local"
    return "ref"


def _first(node: tree_sitter.Node, child_type: str) -> tree_sitter.Node:
    return next(c for c in node.children if c.type == child_type)


def _tokens(node: tree_sitter.Node) -> list[Token]:
    """The tokens of an expression: leaves in order, each string one token with its interpolations."""
    if node.type == "string":
        return [_string_token(node)]
    if node.type == "comment":
        return []
    if node.child_count == 0:
        text = node.text.decode()  # type: ignore[union-attr]
        line = node.start_point[0] + 1
        if node.type == "number":
            return [Token("number", text, line)]
        if _IDENTIFIER.fullmatch(text):
            named = node.is_named and node.type not in ("null",)
            return [Token("ident", text, line, role=_role(node) if named else "keyword")]
        return [Token("op", text, line)]
    return [t for child in node.children for t in _tokens(child)]


def walk_tokens(tokens: list[Token]) -> Iterator[Token]:
    """Every token, the ones inside string interpolations included."""
    for tok in tokens:
        yield tok
        for inner in tok.interpolations:
            yield from walk_tokens(inner)


# ---------------------------------------------------------------------------- values


@dataclass
class Raw:
    """An expression this reader does not evaluate (a reference, call, operator, loop...)."""

    tokens: list[Token]

    @property
    def single_identifier(self) -> str | None:
        return self.tokens[0].value if len(self.tokens) == 1 and self.tokens[0].kind == "ident" else None


@dataclass
class BObject:
    entries: dict[str, Value]
    resources: list[Declaration]


Value = Union[str, int, bool, None, list["Value"], BObject, Raw]  # noqa: UP007 (recursive alias)


@dataclass
class Declaration:
    keyword: str  # param, var, resource, output, module, targetScope, metadata
    name: str
    line: int
    decorators: list[tuple[str, list[Token]]]
    type_tokens: list[Token]
    value_tokens: list[Token]
    value: Value = None
    resource_type: str | None = None  # resources: 'Namespace/type@version' (or 'child' when nested)
    existing: bool = False
    parent: Declaration | None = None

    @property
    def decorator_names(self) -> set[str]:
        return {name for name, _ in self.decorators}

    @property
    def full_type(self) -> str:
        """The resource type without API version, nested types joined to their parent's."""
        assert self.resource_type is not None
        own = self.resource_type.split("@", 1)[0]
        if self.parent is not None and "/" not in own:
            return f"{self.parent.full_type}/{own}"
        return own

    @property
    def api_version(self) -> str:
        """The API version; a nested resource declared without one has its parent's."""
        assert self.resource_type is not None
        if "@" in self.resource_type:
            return self.resource_type.split("@", 1)[1]
        if self.parent is None:
            raise BicepError(f"line {self.line}: {self.name} has no API version")
        return self.parent.api_version

    @property
    def body(self) -> BObject:
        if not isinstance(self.value, BObject):
            raise BicepError(f"line {self.line}: {self.name} has no object body")
        return self.value


def _value(node: tree_sitter.Node, parent: Declaration | None) -> Value:
    """A literal where the node is one (objects and arrays recursively); otherwise Raw."""
    if node.type == "string":
        tok = _string_token(node)
        return tok.value if tok.is_plain_string else Raw([tok])
    if node.type == "number":
        return int(node.text.decode())  # type: ignore[union-attr]
    if node.type == "boolean":
        return node.text == b"true"
    if node.type == "null":
        return None
    if node.type == "object":
        return _object(node, parent)
    if node.type == "array":
        return [_value(c, parent) for c in node.named_children if c.type != "comment"]
    return Raw(_tokens(node))


def _object(node: tree_sitter.Node, parent: Declaration | None) -> BObject:
    obj = BObject({}, [])
    decorators: list[tuple[str, list[Token]]] = []
    for child in node.named_children:
        if child.type == "comment":
            continue
        if child.type == "decorators":
            decorators = _decorators(child)
            continue
        if child.type != "object_property":
            raise BicepError(f"line {child.start_point[0] + 1}: unexpected {child.type} in an object")
        first = child.named_children[0]
        if first.type == "resource_declaration":
            obj.resources.append(_declaration(first, decorators, parent))
            decorators = []
            continue
        if first.type == "string":
            tok = _string_token(first)
            key = "${...}".join(tok.parts)  # an interpolated key, such as a resource id
        else:
            key = first.text.decode()  # type: ignore[union-attr]
        if key in obj.entries:
            raise BicepError(f"line {first.start_point[0] + 1}: property {key!r} appears twice in one object")
        obj.entries[key] = _value(child.named_children[-1], parent)
    return obj


def _decorators(node: tree_sitter.Node) -> list[tuple[str, list[Token]]]:
    """(name, argument tokens) for each decorator; `@sys.description(...)` is 'description'."""
    out = []
    for decorator in node.named_children:
        call = decorator.named_children[0]
        function = call.child_by_field_name("function") or call
        arguments = call.child_by_field_name("arguments")
        name = function.text.decode().rsplit(".", 1)[-1]  # type: ignore[union-attr]
        args = [t for c in (arguments.children[1:-1] if arguments else []) for t in _tokens(c)]
        out.append((name, args))
    return out


_KEYWORDS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "output_declaration": "output",
    "module_declaration": "module",
    "target_scope_assignment": "targetScope",
    "metadata_declaration": "metadata",
}
_RESOURCE_TYPE = re.compile(
    r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+(/[A-Za-z][A-Za-z0-9]*)+@\d{4}-\d{2}-\d{2}(-preview)?$"
)
_CHILD_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(@\d{4}-\d{2}-\d{2}(-preview)?)?$")


def _declaration(
    node: tree_sitter.Node, decorators: list[tuple[str, list[Token]]], parent: Declaration | None
) -> Declaration:
    line = node.start_point[0] + 1
    keyword = _KEYWORDS.get(node.type)
    if keyword is None:
        raise BicepError(f"line {line}: unsupported statement {node.type}")
    children = node.children
    equals = next((i for i, c in enumerate(children) if c.type == "="), len(children))
    head = children[1:equals]  # name, then the type (param/output) or type string (resource/module)
    name = "targetScope" if keyword == "targetScope" else head[0].text.decode()  # type: ignore[union-attr]
    type_nodes = head if keyword == "targetScope" else head[1:]
    decl = Declaration(keyword, name, line, decorators, [t for c in type_nodes for t in _tokens(c)], [], parent=parent)
    if keyword == "resource":
        type_string = type_nodes[0]
        if type_string.type != "string" or not _string_token(type_string).is_plain_string:
            raise BicepError(f"line {line}: resource {name} needs a type string")
        decl.resource_type = _string_token(type_string).value
        shape = _CHILD_TYPE if parent is not None and "/" not in decl.resource_type else _RESOURCE_TYPE
        if not shape.match(decl.resource_type):
            raise BicepError(f"line {line}: resource type {decl.resource_type!r} is not Namespace/type@yyyy-mm-dd")
        decl.existing = any(c.type == "existing" for c in type_nodes)
    if equals == len(children):
        if keyword != "param":
            raise BicepError(f"line {line}: {keyword} {name} has no '= value'")
        return decl
    value = children[equals + 1]
    decl.value_tokens = _tokens(value)
    if keyword == "resource" and value.type == "if_statement":
        value = next(c for c in value.named_children if c.type == "object")  # = if (condition) { ... }
    decl.value = _value(value, decl if keyword == "resource" else parent)
    return decl


def _syntax_errors(node: tree_sitter.Node) -> Iterator[str]:
    if node.is_missing:
        yield f"line {node.start_point[0] + 1}: {node.type!r} is missing"
    elif node.type == "ERROR":
        text = (node.text or b"").decode().strip().splitlines()
        yield f"line {node.start_point[0] + 1}: syntax error at {text[0] if text else ''!r}"
    elif node.has_error:
        for child in node.children:
            yield from _syntax_errors(child)


@dataclass
class Template:
    path: Path
    declarations: list[Declaration]

    def of(self, keyword: str) -> list[Declaration]:
        return [d for d in self.declarations if d.keyword == keyword]

    @property
    def resources(self) -> list[Declaration]:
        """Every resource, nested ones included (depth first)."""
        out: list[Declaration] = []

        def walk(decl: Declaration) -> None:
            out.append(decl)
            if isinstance(decl.value, BObject):
                for child in decl.value.resources:
                    walk(child)

        for decl in self.of("resource"):
            walk(decl)
        return out

    def symbol(self, name: str) -> Declaration:
        for decl in [*self.declarations, *self.resources]:
            if decl.name == name and decl.keyword != "output":
                return decl
        raise KeyError(name)

    def resolve(self, value: Value) -> Value:
        """A literal value, following a bare param/var reference to its default."""
        if isinstance(value, Raw) and (ident := value.single_identifier) is not None:
            decl = self.symbol(ident)
            if decl.keyword in ("param", "var") and decl.value_tokens:
                return self.resolve(decl.value)
        return value


def parse(path: Path) -> Template:
    tree = _PARSER.parse(path.read_bytes())
    if errors := list(_syntax_errors(tree.root_node)):
        raise BicepError("; ".join(errors))
    declarations: list[Declaration] = []
    decorators: list[tuple[str, list[Token]]] = []
    for node in tree.root_node.named_children:
        if node.type == "comment":
            continue
        if node.type == "decorators":
            decorators = _decorators(node)
            continue
        declarations.append(_declaration(node, decorators, None))
        decorators = []
    return Template(path, declarations)


# ------------------------------------------------------------------- references

# Bicep's functions and decorators (the namespaces az and sys hold the same names).
FUNCTIONS = frozenset(
    """
    any array bool int string json concat contains empty first last length take skip union intersection
    min max range split join replace toLower toUpper trim substring indexOf lastIndexOf startsWith endsWith
    format guid newGuid uniqueString base64 base64ToString base64ToJson uri uriComponent uriComponentToString
    dataUri dataUriToString padLeft utcNow dateTimeAdd dateTimeFromEpoch dateTimeToEpoch resourceGroup
    subscription tenant managementGroup deployment environment resourceId subscriptionResourceId
    tenantResourceId extensionResourceId managementGroupResourceId reference list listKeys listSecrets
    pickZones providers items filter map reduce sort toObject flatten coalesce createArray createObject
    loadTextContent loadJsonContent loadYamlContent loadFileAsBase64 getSecret parseCidr cidrSubnet cidrHost
    shallowMerge buildUri parseUri readEnvironmentVariable mapValues groupBy objectKeys tryGet fail
    description secure allowed minLength maxLength minValue maxValue metadata batchSize export sealed
    discriminator onlyIfNotExists
    """.split()
)
_NOT_SYMBOLS = frozenset({"az", "sys"})


def expression_tokens(decl: Declaration) -> list[Token]:
    """Every token of a declaration that is an expression (value and decorator arguments)."""
    tokens = list(decl.value_tokens)
    for _, args in decl.decorators:
        tokens.extend(args)
    return tokens


def unresolved_references(template: Template) -> list[str]:
    """Identifiers used as symbols or functions that the template does not declare."""
    declared = {d.name for d in template.declarations if d.keyword != "output"}
    declared |= {r.name for r in template.resources}
    problems: list[str] = []
    for decl in template.declarations:
        tokens = list(walk_tokens(expression_tokens(decl)))
        locals_ = {tok.value for tok in tokens if tok.role == "local"}
        for tok in tokens:
            if tok.role == "ref" and tok.value not in declared | locals_ | _NOT_SYMBOLS:
                problems.append(f"line {tok.line}: {tok.value!r} is not declared")
            elif tok.role == "call" and tok.value not in FUNCTIONS and tok.value not in declared:
                problems.append(f"line {tok.line}: unknown function {tok.value}()")
        for name, _ in decl.decorators:
            if name not in FUNCTIONS:
                problems.append(f"line {decl.line}: unknown decorator @{name}")
    return problems


def references(tokens: list[Token]) -> set[str]:
    """The symbols and functions/methods an expression uses (member names excluded, list*() included)."""
    return {
        tok.value
        for tok in walk_tokens(tokens)
        if tok.role in ("ref", "call", "child") or (tok.role == "member" and tok.value.startswith("list"))
    }
