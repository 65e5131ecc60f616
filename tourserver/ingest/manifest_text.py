"""Decode a manifest's text (YAML 1.2 or JSON) into plain data, with the line of every field.

YAML is read with ruamel.yaml's YAML 1.2 core schema, so `start: 20:00`, a language `no` and
`on`/`off` stay strings (YAML 1.1 readers turn them into 1200, false and true). We compose the
node tree and build the values ourselves, which lets us refuse duplicate keys (naming both
lines), refuse tags that are not plain data, bound alias expansion ("billion laughs") and
record a JSON pointer -> line map. JSON is decoded by `json`, and its lines come from
composing the same text as YAML (JSON is YAML 1.2); if that fails there are no lines.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tourserver.errors import Issue

# More nodes than any real tour has (a 100-stop tour is ~10k); caps alias expansion.
MAX_NODES = 500_000
# Longer digit strings are not coordinates; Python refuses ints over 4300 digits anyway.
MAX_NUMBER_CHARS = 100

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_STOP_RE = re.compile(r"^/stops/(\d+)(?:/|$)")


@dataclass(frozen=True)
class ManifestText:
    """A decoded manifest: `data` (dict/list/str/int/float/bool/None), `lines` (JSON pointer
    -> 1-based line, for every key and list item), `plain` (pointer -> source text of each
    unquoted scalar that was not read as a string, to say exactly what to quote), and the
    non-fatal `issues` found while reading (duplicate keys, tags)."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    plain: dict[str, str] = field(default_factory=dict)
    issues: tuple[Issue, ...] = ()


class ManifestSyntaxError(Exception):
    """The text cannot be read at all; carries the one Issue that says where and why."""

    def __init__(self, issue: Issue):
        super().__init__(issue.message)
        self.issue = issue


def line_at(lines: dict[str, int], pointer: str | None) -> int | None:
    """The line of `pointer`, or of its longest prefix that has one (a missing field's
    line is its parent object's)."""
    if pointer is None:
        return None
    while True:
        if pointer in lines:
            return lines[pointer]
        if pointer in ("", "/"):
            return None
        pointer = pointer.rsplit("/", 1)[0] or "/"


def stop_index(pointer: str | None) -> int | None:
    """N for a pointer under /stops/N, else None."""
    match = _STOP_RE.match(pointer or "")
    return int(match.group(1)) if match else None


def child(pointer: str, key: object) -> str:
    return f"{'' if pointer == '/' else pointer}/{key}"


def decode_yaml(text: str, file: str | None) -> ManifestText:
    """Read YAML 1.2 text. Raises ManifestSyntaxError with line and column."""
    root = _compose(text, file)
    walker = _Walker(file)
    data = walker.value(root, "/") if root is not None else None
    return ManifestText(data, walker.lines, walker.plain, tuple(walker.issues))


def decode_json(text: str, file: str | None) -> ManifestText:
    """Read JSON text; duplicate keys are an issue (with both lines where they can be found),
    NaN, Infinity and out-of-range numbers stay text so the schema refuses them by field."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
                continue  # the first one stands, and the duplicate is an error
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_float=_json_float,
                          parse_int=_json_int, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise ManifestSyntaxError(Issue("syntax", f"column {exc.colno}: {exc.msg}", file,
                                        line=exc.lineno)) from None
    except RecursionError:
        raise ManifestSyntaxError(_too_deep(file)) from None
    try:
        walker = _Walker(file)
        root = _compose(text, file)
        if root is not None:
            walker.value(root, "/")
    except ManifestSyntaxError:
        # Valid JSON that YAML cannot compose (rare): report without lines.
        return ManifestText(data, issues=tuple(
            Issue("duplicate_key", f"key `{key}` appears more than once", file,
                  hint="keep one of them: the reader does not pick a winner")
            for key in duplicates))
    dup_issues = [i for i in walker.issues if i.code == "duplicate_key"]
    return ManifestText(data, walker.lines, {}, tuple(dup_issues))


def _json_float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _json_int(text: str) -> int | str:
    return int(text) if len(text) <= MAX_NUMBER_CHARS else text


def _too_deep(file: str | None) -> Issue:
    return Issue("syntax", "nested too deeply to read", file,
                 hint="a tour manifest is a few levels deep; look for unclosed brackets")


def _compose(text: str, file: str | None) -> Node | None:
    yaml = YAML(typ="safe", pure=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel warns on reused anchors; not a problem
            return yaml.compose(text)
    except YAMLError as exc:
        raise ManifestSyntaxError(_syntax_issue(exc, text, file)) from None
    except RecursionError:
        raise ManifestSyntaxError(_too_deep(file)) from None


def _syntax_issue(exc: YAMLError, text: str, file: str | None) -> Issue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem and context and context.startswith("expected"):
        problem = f"{context}, {problem}"  # "expected a single document, but found another"
    if mark is not None:
        line, where = mark.line + 1, f"column {mark.column + 1}: "
    elif isinstance(pos := getattr(exc, "position", None), int):  # ReaderError: a bad character
        line = text.count("\n", 0, pos) + 1
        where = f"column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}: "
        problem = f"character #x{getattr(exc, 'character', 0):04x} is not allowed in YAML"
    else:
        line, where = None, ""
    message = f"{where}{problem or str(exc).splitlines()[0]}"
    hint = "indent with spaces, not tabs" if "'\\t'" in message else None
    return Issue("syntax", message, file, line=line, hint=hint)


class _Walker:
    """Node tree -> plain values, recording lines, plain scalars and reading problems."""

    def __init__(self, file: str | None):
        self.file = file
        self.lines: dict[str, int] = {}
        self.plain: dict[str, str] = {}
        self.issues: list[Issue] = []
        self._budget = MAX_NODES
        self._checked: set[int] = set()  # mappings already checked for duplicates (aliases)

    def value(self, node: Node, pointer: str) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise ManifestSyntaxError(Issue(
                "manifest_too_complex", f"more than {MAX_NODES} values once aliases are "
                "expanded", self.file, hint="use fewer anchors (&) and aliases (*)"))
        self.lines.setdefault(pointer, node.start_mark.line + 1)
        tag = str(getattr(node.tag, "value", node.tag))
        if isinstance(node, MappingNode):
            self._check_tag(tag, f"{_CORE}map", node)
            return self._mapping(node, pointer)
        if isinstance(node, SequenceNode):
            self._check_tag(tag, f"{_CORE}seq", node)
            return [self.value(item, child(pointer, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)  # the composer builds no other kind of node
        if tag not in _SCALAR_TAGS:  # !!binary, !!python/..., !custom
            self._check_tag(tag, f"{_CORE}str", node)
        result = _scalar(tag, str(node.value))
        if node.style is None and not isinstance(result, str):
            self.plain[pointer] = node.value
        return result

    def _check_tag(self, tag: str, expected: str, node: Node) -> None:
        if tag != expected:
            short = tag.replace(_CORE, "!!")
            self.issues.append(Issue("syntax", f"tag `{short}` is not allowed: a manifest is "
                                     "plain data", self.file, line=node.start_mark.line + 1,
                                     hint=f"remove `{short}`"))

    def _mapping(self, node: MappingNode, pointer: str, out: dict | None = None) -> dict:
        """Fill `out` with the mapping's keys. Called again for each `<<` merge source with
        the same `out`: keys already there win, and are not duplicates."""
        merging = out is not None
        out = {} if out is None else out
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        check = not merging and id(node) not in self._checked
        self._checked.add(id(node))
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if str(getattr(key_node.tag, "value", key_node.tag)) == f"{_CORE}merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.issues.append(Issue("syntax", "a key must be plain text, not a list or "
                                         "mapping", self.file, line=key_line))
                continue
            key = str(key_node.value)
            here = child(pointer, key)
            if key in out:
                if check and key in first_line:
                    again = (f"twice on line {key_line}" if first_line[key] == key_line
                             else f"twice, on lines {first_line[key]} and {key_line}")
                    self.issues.append(Issue(
                        "duplicate_key", f"key `{key}` appears {again}", self.file, here,
                        line=key_line, hint="keep one of them: the reader does not pick a "
                                            "winner"))
                continue  # the first one stands, and the duplicate is an error
            first_line[key] = key_line
            self.lines[here] = key_line
            out[key] = self.value(value_node, here)
        # YAML merge keys (<<: *defaults): keys written here win, then earlier sources.
        for source in (s for m in merges
                       for s in (m.value if isinstance(m, SequenceNode) else [m])):
            if isinstance(source, MappingNode):
                self._mapping(source, pointer, out)
            else:
                self.issues.append(Issue("syntax", "`<<` must merge a mapping", self.file,
                                         line=source.start_mark.line + 1))
        return out


def _scalar(tag: str, text: str) -> Any:
    """A core-schema scalar's value. Numbers that are not finite or too long stay text, so
    the schema names the field ('.nan' is not of type 'number')."""
    kind = tag.removeprefix(_CORE)
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind in ("int", "float") and len(text) <= MAX_NUMBER_CHARS:
        digits = text.replace("_", "")
        try:
            if kind == "int":
                sign = -1 if digits.startswith("-") else 1
                body = digits.lstrip("+-")
                if body[:2] in ("0o", "0x", "0b"):
                    return sign * int(body[2:], {"o": 8, "x": 16, "b": 2}[body[1]])
                return int(digits)
            value = float(digits)  # ".inf" and ".nan" raise: they are not coordinates
        except ValueError:
            return text
        return value if math.isfinite(value) else text
    return text  # str, timestamp (not in the core schema: JSON has no dates), long numbers
