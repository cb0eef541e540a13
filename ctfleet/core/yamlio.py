"""YAML loading that keeps line numbers, so errors can name the file *and* the line.

ruamel.yaml's round-trip loader records the position of every key and item; we walk a
pydantic error location (``('values', 'LNK-1')``) back to the line it came from.
PyYAML drops positions once a document is constructed, which is why this uses ruamel.

Every file a person edits is read through :func:`parse_yaml`, which bounds what a file
can cost: aliases (``*name``, the "billion laughs" bomb) are refused, nesting depth and
size are capped, and numbers that mean nothing in a human-edited file (``.nan``, ``.inf``,
``1e999``, integers beyond 2**53) are refused with their line.
"""

from __future__ import annotations

import io
import math
import re
import typing
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.events import AliasEvent

from ctfleet.core.errors import InputError, InputErrors, Problem


class Doc:
    """A parsed YAML document with its source file, for error positions."""

    def __init__(self, path: str, tree: Any):
        self.path = path
        self.tree = tree

    def line_of(self, loc: Iterable[Any]) -> int | None:
        """1-based line of the deepest key/item of ``loc`` that exists in the document."""
        node, line = self.tree, None
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        if line is None and hasattr(self.tree, "lc"):
            line = self.tree.lc.line + 1
        return line

    def plain(self) -> Any:
        return _plain(self.tree)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


MAX_BYTES = 4_000_000  # the largest human-edited file (seats.yaml) is ~20 kB
MAX_DEPTH = 32  # the deepest schema (stack configs) nests 5 levels
MAX_INT = 2**53  # no count, size or duration ctfleet reads comes near; beyond it floats lose integers
MAX_FLOAT = 1e15
ALIAS_REFUSED = "YAML aliases (*name) are not allowed in ctfleet files"


class _NoAliasComposer(Composer):
    """Refuses aliases as they are met, before anything is expanded (no alias bomb can grow)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise ComposerError(None, None, ALIAS_REFUSED, event.start_mark)
        return super().compose_node(parent, index)


class YamlContentError(ValueError):
    """Why a document cannot be read, with its 1-based line; ``content_free`` holds no text of the document."""

    def __init__(self, what: str, line: int | None, content_free: str):
        super().__init__(what)
        self.what, self.line, self.content_free = what, line, content_free


def read_tree(text: str) -> Any:
    """The round-trip tree of ``text`` within the bounds above, or :class:`YamlContentError`."""
    if len(text) > MAX_BYTES:
        raise YamlContentError(f"file is larger than {MAX_BYTES:,} bytes", None, f"larger than {MAX_BYTES:,} bytes")
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Composer = _NoAliasComposer
    yaml.max_depth = MAX_DEPTH
    try:
        tree = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or str(exc).splitlines()[0]
        if what == ALIAS_REFUSED:
            raise YamlContentError(what, line, "uses YAML aliases (*name), which ctfleet refuses") from None
        if "maximum depth" in what:
            what = f"nested deeper than {MAX_DEPTH} levels"
            raise YamlContentError(what, line, what) from None
        if "duplicate key" in str(exc):
            what = "duplicate key " + str(exc).split('found duplicate key', 1)[-1].split("\n")[0].strip()
        raise YamlContentError(f"malformed YAML: {what}", line, "is not valid YAML") from None
    except ReaderError as exc:  # a control character or a NUL: no mark, a position in the text
        line = text[: max(0, exc.position)].count("\n") + 1
        raise YamlContentError(f"malformed YAML: unacceptable character #x{exc.character:04x} (control characters "
                               "are not allowed)", line, "holds a control character") from None
    except YAMLError as exc:  # any other complaint of the parser, without a position
        raise YamlContentError(f"malformed YAML: {type(exc).__name__}", None, "is not valid YAML") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a bad timestamp or an unhashable key
        raise YamlContentError(f"malformed YAML: {type(exc).__name__}: {exc}", None, "is not valid YAML") from None
    bad = _first_unbounded(tree)
    if bad:
        what, line = bad
        raise YamlContentError(what, line, "holds a number ctfleet refuses (not finite or too large)")
    return tree


def _first_unbounded(node: Any, line: int | None = None) -> tuple[str, int | None] | None:
    """The first number no human-edited file can mean (``.nan``, ``.inf``, ``1e999``, 10**60), with its line."""
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            found = _first_unbounded(value, node.lc.key(key)[0] + 1)
            if found:
                return found
    elif isinstance(node, CommentedSeq):
        for i, value in enumerate(node):
            found = _first_unbounded(value, node.lc.item(i)[0] + 1)
            if found:
                return found
    elif isinstance(node, float) and not math.isfinite(node):
        return f"{node!r} is not a finite number", line
    elif isinstance(node, float) and abs(node) > MAX_FLOAT:
        return f"number {node:g} is out of range (valid: at most {MAX_FLOAT:g})", line
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INT:
        return f"number {str(node)[:20]}{'...' if len(str(node)) > 20 else ''} is out of range (valid: at most 2**53)", line
    return None


def parse_yaml(text: str, path: str) -> Doc:
    try:
        return Doc(path, read_tree(text))
    except YamlContentError as exc:
        raise InputError(Problem(path, exc.what, line=exc.line)) from None


def load_yaml(path: Path, display: str | None = None) -> Doc:
    shown = display or str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(Problem(shown, f"file is larger than {MAX_BYTES:,} bytes", valid="a ctfleet YAML file"))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(Problem(shown, "file not found")) from None
    except IsADirectoryError:
        raise InputError(Problem(shown, "is a directory, not a file")) from None
    except OSError as exc:
        raise InputError(Problem(shown, f"cannot read: {exc.strerror}")) from None
    except UnicodeDecodeError as exc:
        raise InputError(Problem(shown, f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    return parse_yaml(text, shown)


def loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(doc: Doc, model: type[BaseModel], data: Any | None = None, prefix: tuple = ()) -> Any:
    """Validate ``doc`` (or ``data`` found at ``prefix`` in it) against a strict pydantic model.

    Every error becomes a :class:`Problem` naming the file, line and key; all are raised at once.
    """
    try:
        return model.model_validate(doc.plain() if data is None else data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(_fields_at(model, err["loc"][:-1])))
                problems.append(Problem(doc.path, "unknown key", line=doc.line_of(loc), key=loc_text(loc),
                                        valid=f"one of {allowed}" if allowed else None))
                continue
            if err["type"] == "missing":
                problems.append(Problem(doc.path, "required key is missing", line=doc.line_of(loc), key=loc_text(loc)))
                continue
            if err["type"] == "value_error" and "error" in err.get("ctx", {}):
                msg = str(err["ctx"]["error"])  # a validator's own message says what is wrong and valid
            elif "input" in err and err["type"] not in ("model_type", "dict_type"):
                # a key that holds a secret (or a reference to one) never echoes what was typed there
                msg += ", value not shown (this key holds credentials)" if _secret_at(model, err["loc"]) else f", got {_short(err['input'])}"
            problems.append(Problem(doc.path, msg, line=doc.line_of(loc), key=loc_text(loc)))
        if len(problems) == 1:
            raise InputError(problems[0]) from None
        raise InputErrors(problems) from None


def _short(value: Any) -> str:
    """``repr`` of a bad value, cut to 80 characters (a value may be a whole pasted document)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Keys whose value is, or may be mistaken for, a secret: errors about them never show the value.
_SECRET_KEY = re.compile(r"(password|passwd|secret|credential|token|community|login|identity|(^|_)(auth|priv)_?key$)", re.I)


def _secret_at(model: type[BaseModel], loc: tuple) -> bool:
    """Whether ``loc`` (a pydantic error location) is, or is inside, a field holding credentials:
    a :class:`~ctfleet.core.secrets.Secret` or ``CredentialRef``, or a key named like one."""
    from ctfleet.core.secrets import CredentialRef, Secret

    current: Any = model
    for part in loc:
        if isinstance(part, str) and _SECRET_KEY.search(part):
            return True
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            continue
        ann = fields[part].annotation
        if _mentions(ann, (Secret, CredentialRef)):
            return True
        current = _model_in(ann) or current
    return False


def _mentions(ann: Any, types: tuple) -> bool:
    if isinstance(ann, type) and issubclass(ann, types):
        return True
    return any(_mentions(a, types) for a in getattr(ann, "__args__", ()) or ())


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc``, for 'valid keys' hints."""
    current: Any = model
    skip_key = False
    for part in loc:
        if isinstance(part, int) or skip_key:
            skip_key = False
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        skip_key = typing.get_origin(ann) is dict  # next part is a mapping key, not a field
        current = _model_in(ann)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}).keys())


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None
