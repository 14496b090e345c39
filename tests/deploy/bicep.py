"""A small, strict reader for the subset of Bicep that infra/main.bicep uses.

No Bicep compiler runs offline here (the `bicep` CLI is a download), so the deploy tests
read the template themselves: tokens (strings with interpolation, comments), balanced
brackets, the top-level declarations, resource bodies as objects, and every identifier
an expression refers to. Anything outside the subset raises BicepError rather than
being skipped, so a new construct makes the tests ask for attention instead of passing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


class BicepError(ValueError):
    """The template is malformed (or uses a construct this reader does not know)."""


@dataclass
class Token:
    kind: str  # ident, number, string, op, newline
    value: str
    line: int
    # For strings: the literal pieces and the token lists of each ${...} interpolation.
    parts: list[str] = field(default_factory=list)
    interpolations: list[list[Token]] = field(default_factory=list)

    @property
    def is_plain_string(self) -> bool:
        return self.kind == "string" and not self.interpolations


_OPERATORS = sorted(
    ["::", "??", "?.", "==", "!=", "=~", "!~", "<=", ">=", "&&", "||", "=>", *"{}[]().,:?=!<>+-*/%@|"],
    key=len,
    reverse=True,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+")
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def error(self, message: str) -> BicepError:
        return BicepError(f"line {self.line}: {message}")

    def tokens(self, *, until_brace: bool = False) -> list[Token]:
        """Tokens up to the end (or, inside ${...}, up to the matching close brace)."""
        out: list[Token] = []
        depth = 0
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r":
                self.pos += 1
            elif ch == "\n":
                out.append(Token("newline", "\n", self.line))
                self.line += 1
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment")
                self.line += text.count("\n", self.pos, end)
                self.pos = end + 2
            elif text.startswith("'''", self.pos):
                end = text.find("'''", self.pos + 3)
                if end < 0:
                    raise self.error("unterminated ''' string")
                value = text[self.pos + 3 : end]
                out.append(Token("string", value, self.line, parts=[value]))
                self.line += value.count("\n")
                self.pos = end + 3
            elif ch == "'":
                out.append(self.string())
            elif until_brace and ch == "}" and depth == 0:
                self.pos += 1
                return out
            elif m := _IDENT.match(text, self.pos):
                out.append(Token("ident", m.group(), self.line))
                self.pos = m.end()
            elif m := _NUMBER.match(text, self.pos):
                out.append(Token("number", m.group(), self.line))
                self.pos = m.end()
            else:
                for op in _OPERATORS:
                    if text.startswith(op, self.pos):
                        break
                else:
                    raise self.error(f"unexpected character {ch!r}")
                if until_brace and op == "{":
                    depth += 1
                elif until_brace and op == "}":
                    depth -= 1
                out.append(Token("op", op, self.line))
                self.pos += len(op)
        if until_brace:
            raise self.error("unterminated ${ interpolation")
        return out

    def string(self) -> Token:
        start_line = self.line
        self.pos += 1
        parts: list[str] = []
        interpolations: list[list[Token]] = []
        buf: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise BicepError(f"line {start_line}: unterminated string")
            ch = text[self.pos]
            if ch == "\\":
                nxt = text[self.pos + 1 : self.pos + 2]
                if nxt in _ESCAPES:
                    buf.append(_ESCAPES[nxt])
                    self.pos += 2
                    continue
                if nxt == "u":
                    m = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}").match(text, self.pos)
                    if not m:
                        raise BicepError(f"line {start_line}: bad \\u escape")
                    buf.append(chr(int(m.group(1), 16)))
                    self.pos = m.end()
                    continue
                raise BicepError(f"line {start_line}: unknown escape \\{nxt}")
            if text.startswith("${", self.pos):
                parts.append("".join(buf))
                buf = []
                self.pos += 2
                inner = self.tokens(until_brace=True)
                if not [t for t in inner if t.kind != "newline"]:
                    raise BicepError(f"line {start_line}: empty ${{}} interpolation")
                interpolations.append(inner)
                continue
            if ch == "'":
                self.pos += 1
                parts.append("".join(buf))
                return Token("string", "".join(parts), start_line, parts=parts, interpolations=interpolations)
            buf.append(ch)
            self.pos += 1


def tokenize(text: str) -> list[Token]:
    return _Lexer(text).tokens()


_PAIRS = {"(": ")", "[": "]", "{": "}"}


def check_balanced(tokens: list[Token]) -> None:
    """Brackets, braces and parentheses balance (strings and comments are already out)."""
    stack: list[Token] = []
    for tok in tokens:
        if tok.kind == "string":
            for inner in tok.interpolations:
                check_balanced(inner)
            continue
        if tok.kind != "op":
            continue
        if tok.value in _PAIRS:
            stack.append(tok)
        elif tok.value in _PAIRS.values():
            if not stack:
                raise BicepError(f"line {tok.line}: unmatched {tok.value!r}")
            opener = stack.pop()
            if _PAIRS[opener.value] != tok.value:
                raise BicepError(f"line {tok.line}: {tok.value!r} closes {opener.value!r} of line {opener.line}")
    if stack:
        raise BicepError(f"line {stack[-1].line}: {stack[-1].value!r} is never closed")


# ---------------------------------------------------------------------------- values


@dataclass
class Raw:
    """An expression this reader does not evaluate (a reference, call, operator, loop...)."""

    tokens: list[Token]

    @property
    def single_identifier(self) -> str | None:
        real = [t for t in self.tokens if t.kind != "newline"]
        return real[0].value if len(real) == 1 and real[0].kind == "ident" else None


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
    def body(self) -> BObject:
        if not isinstance(self.value, BObject):
            raise BicepError(f"line {self.line}: {self.name} has no object body")
        return self.value


def _skip_newlines(tokens: list[Token], i: int) -> int:
    while i < len(tokens) and tokens[i].kind == "newline":
        i += 1
    return i


def _matching(tokens: list[Token], i: int) -> int:
    """Index of the bracket closing tokens[i]."""
    depth = 0
    for j in range(i, len(tokens)):
        tok = tokens[j]
        if tok.kind == "op" and tok.value in _PAIRS:
            depth += 1
        elif tok.kind == "op" and tok.value in _PAIRS.values():
            depth -= 1
            if depth == 0:
                return j
    raise BicepError(f"line {tokens[i].line}: {tokens[i].value!r} is never closed")


def _expression_end(tokens: list[Token], i: int, stops: tuple[str, ...] = ()) -> int:
    """Index just past an expression: at a newline, a stop operator or a closer, at depth 0."""
    depth = 0
    j = i
    while j < len(tokens):
        tok = tokens[j]
        if tok.kind == "op" and tok.value in _PAIRS:
            depth += 1
        elif tok.kind == "op" and tok.value in _PAIRS.values():
            if depth == 0:
                return j
            depth -= 1
        elif depth == 0 and (tok.kind == "newline" or (tok.kind == "op" and tok.value in stops)):
            return j
        j += 1
    return j


def parse_value(tokens: list[Token], parent: Declaration | None = None) -> Value:
    """An expression's value: literals, objects and arrays; anything else stays Raw."""
    real = [t for t in tokens if t.kind != "newline"]
    if not real:
        raise BicepError("empty expression")
    first = real[0]
    if len(real) == 1:
        if first.kind == "string" and first.is_plain_string:
            return first.value
        if first.kind == "number":
            return int(first.value)
        if first.kind == "ident" and first.value in ("true", "false"):
            return first.value == "true"
        if first.kind == "ident" and first.value == "null":
            return None
    start = tokens.index(first)
    if first.kind == "op" and first.value in ("{", "[") and _matching(tokens, start) == tokens.index(real[-1]):
        inner = tokens[start + 1 : tokens.index(real[-1])]
        if first.value == "{":
            return _parse_object(inner, first.line, parent)
        if not (real[1].kind == "ident" and real[1].value == "for"):
            return _parse_array(inner)
    return Raw(tokens)


def _parse_object(tokens: list[Token], line: int, parent: Declaration | None) -> BObject:
    obj = BObject({}, [])
    i = _skip_newlines(tokens, 0)
    while i < len(tokens):
        tok = tokens[i]
        is_decorator = tok.kind == "op" and tok.value == "@"
        is_nested_resource = (
            tok.kind == "ident" and tok.value == "resource" and i + 1 < len(tokens) and tokens[i + 1].kind == "ident"
        )
        if is_decorator or is_nested_resource:
            decl, i = _parse_declaration(tokens, i, parent)
            obj.resources.append(decl)
            i = _skip_newlines(tokens, i)
            continue
        if tok.kind == "ident" or tok.is_plain_string:
            key = tok.value
        elif tok.kind == "string":
            key = "${...}".join(tok.parts)  # an interpolated key, such as a resource id
        else:
            raise BicepError(f"line {tok.line}: expected a property name, found {tok.value!r}")
        if i + 1 >= len(tokens) or tokens[i + 1].value != ":":
            raise BicepError(f"line {tok.line}: expected ':' after property {key!r}")
        if key in obj.entries:
            raise BicepError(f"line {tok.line}: property {key!r} appears twice in one object")
        end = _expression_end(tokens, i + 2, stops=(",",))
        obj.entries[key] = parse_value(tokens[i + 2 : end], parent)
        i = end
        if i < len(tokens) and tokens[i].value == ",":
            i += 1
        i = _skip_newlines(tokens, i)
    return obj


def _parse_array(tokens: list[Token]) -> list[Value]:
    items: list[Value] = []
    i = _skip_newlines(tokens, 0)
    while i < len(tokens):
        end = _expression_end(tokens, i, stops=(",",))
        items.append(parse_value(tokens[i:end]))
        i = end
        if i < len(tokens) and tokens[i].value == ",":
            i += 1
        i = _skip_newlines(tokens, i)
    return items


_RESOURCE_TYPE = re.compile(
    r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+(/[A-Za-z][A-Za-z0-9]*)+@\d{4}-\d{2}-\d{2}(-preview)?$"
)
_CHILD_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(@\d{4}-\d{2}-\d{2}(-preview)?)?$")
_KEYWORDS = ("param", "var", "resource", "output", "module", "targetScope", "metadata")


def _parse_declaration(tokens: list[Token], i: int, parent: Declaration | None) -> tuple[Declaration, int]:
    decorators: list[tuple[str, list[Token]]] = []
    while tokens[i].kind == "op" and tokens[i].value == "@":
        name_tok = tokens[i + 1]
        if name_tok.kind != "ident" or tokens[i + 2].value != "(":
            raise BicepError(f"line {name_tok.line}: malformed decorator")
        close = _matching(tokens, i + 2)
        decorators.append((name_tok.value, tokens[i + 3 : close]))
        i = _skip_newlines(tokens, close + 1)
    kw = tokens[i]
    if kw.kind != "ident" or kw.value not in _KEYWORDS:
        raise BicepError(f"line {kw.line}: unsupported statement starting with {kw.value!r}")
    if kw.value == "targetScope":
        name, j = "targetScope", i + 1
    else:
        name_tok = tokens[i + 1]
        if name_tok.kind != "ident":
            raise BicepError(f"line {kw.line}: {kw.value} needs a name")
        name, j = name_tok.value, i + 2
    decl = Declaration(kw.value, name, kw.line, decorators, [], [], parent=parent)
    # Everything up to '=' (or the end of the line for a param without default) is the type part.
    while j < len(tokens) and tokens[j].kind != "newline" and tokens[j].value != "=":
        decl.type_tokens.append(tokens[j])
        j += 1
    if kw.value == "resource":
        if not decl.type_tokens or not decl.type_tokens[0].is_plain_string:
            raise BicepError(f"line {kw.line}: resource {name} needs a type string")
        decl.resource_type = decl.type_tokens[0].value
        shape = _CHILD_TYPE if parent is not None and "/" not in decl.resource_type else _RESOURCE_TYPE
        if not shape.match(decl.resource_type):
            raise BicepError(f"line {kw.line}: resource type {decl.resource_type!r} is not Namespace/type@yyyy-mm-dd")
        rest = [t.value for t in decl.type_tokens[1:]]
        if rest not in ([], ["existing"]):
            raise BicepError(f"line {kw.line}: unexpected {' '.join(rest)!r} after the resource type")
        decl.existing = rest == ["existing"]
    if j >= len(tokens) or tokens[j].kind == "newline":
        if kw.value != "param":
            raise BicepError(f"line {kw.line}: {kw.value} {name} has no '= value'")
        return decl, j
    end = _expression_end(tokens, j + 1)
    decl.value_tokens = tokens[j + 1 : end]
    if not [t for t in decl.value_tokens if t.kind != "newline"]:
        raise BicepError(f"line {kw.line}: {kw.value} {name} has an empty value")
    value_tokens = decl.value_tokens
    if kw.value == "resource" and value_tokens[0].value == "if":
        # resource x '...' = if (condition) { ... }
        close = _matching(value_tokens, 1)
        value_tokens = value_tokens[close + 1 :]
    decl.value = parse_value(value_tokens, decl if kw.value == "resource" else parent)
    return decl, end


@dataclass
class Template:
    path: Path
    tokens: list[Token]
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
    tokens = tokenize(path.read_text())
    check_balanced(tokens)
    declarations: list[Declaration] = []
    i = _skip_newlines(tokens, 0)
    while i < len(tokens):
        decl, i = _parse_declaration(tokens, i, None)
        declarations.append(decl)
        if i < len(tokens) and tokens[i].kind != "newline":
            raise BicepError(f"line {tokens[i].line}: unexpected {tokens[i].value!r} after {decl.name}")
        i = _skip_newlines(tokens, i)
    return Template(path, tokens, declarations)


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
_NOT_SYMBOLS = frozenset({"true", "false", "null", "if", "for", "in", "existing", "az", "sys"})


def _identifier_uses(tokens: list[Token]) -> list[tuple[Token, str]]:
    """(token, role) for each identifier: 'ref', 'call', 'member', 'child', 'key', 'local'."""
    uses: list[tuple[Token, str]] = []
    real = tokens
    for idx, tok in enumerate(real):
        if tok.kind == "string":
            for inner in tok.interpolations:
                uses.extend(_identifier_uses(inner))
            continue
        if tok.kind != "ident":
            continue
        prev = real[idx - 1] if idx > 0 else None
        nxt = real[idx + 1] if idx + 1 < len(real) else None
        if tok.value == "resource" and nxt is not None and nxt.kind == "ident":
            uses.append((tok, "keyword"))
        elif prev is not None and prev.kind == "ident" and prev.value == "resource":
            uses.append((tok, "declaration"))
        elif prev is not None and prev.value in (".", "?."):
            uses.append((tok, "member"))
        elif prev is not None and prev.value == "::":
            uses.append((tok, "child"))
        elif nxt is not None and nxt.value == "(" and (prev is None or prev.value != "for"):
            uses.append((tok, "call"))
        elif nxt is not None and nxt.value == ":" and (prev is None or prev.kind == "newline" or prev.value in "{,"):
            uses.append((tok, "key"))
        elif prev is not None and (prev.value == "for" or (prev.value in "(," and _loop_header(real, idx))):
            uses.append((tok, "local"))
        elif nxt is not None and nxt.value == "=>":
            uses.append((tok, "local"))
        else:
            uses.append((tok, "ref"))
    return uses


def _loop_header(tokens: list[Token], idx: int) -> bool:
    """tokens[idx] is inside `for (item, index) in`."""
    j = idx
    while j > 0 and tokens[j].value != "(":
        j -= 1
    return j > 0 and tokens[j - 1].value == "for"


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
        uses = _identifier_uses(expression_tokens(decl))
        locals_ = {tok.value for tok, role in uses if role == "local"}
        for tok, role in uses:
            if role == "ref" and tok.value not in declared | locals_ | _NOT_SYMBOLS:
                problems.append(f"line {tok.line}: {tok.value!r} is not declared")
            elif role == "call" and tok.value not in FUNCTIONS and tok.value not in declared:
                problems.append(f"line {tok.line}: unknown function {tok.value}()")
        for name, _ in decl.decorators:
            if name not in FUNCTIONS:
                problems.append(f"line {decl.line}: unknown decorator @{name}")
    return problems


def references(tokens: list[Token]) -> set[str]:
    """The symbols and functions/methods an expression uses (member names excluded, calls included)."""
    out: set[str] = set()
    for tok, role in _identifier_uses(tokens):
        if role in ("ref", "call", "child"):
            out.add(tok.value)
        elif role == "member" and tok.value.startswith("list"):
            out.add(tok.value)
    return out
