"""YAML loading that keeps line numbers, so errors can name the file *and* the line.

ruamel.yaml's round-trip loader records the position of every key and item; we walk a
pydantic error location (``('values', 'LNK-1')``) back to the line it came from.
PyYAML drops positions once a document is constructed, which is why this uses ruamel.
"""

from __future__ import annotations

import io
import typing
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

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


def parse_yaml(text: str, path: str) -> Doc:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or str(exc).splitlines()[0]
        if "duplicate key" in str(exc):
            what = "duplicate key " + str(exc).split('found duplicate key', 1)[-1].split("\n")[0].strip()
        raise InputError(Problem(path, f"malformed YAML: {what}", line=line)) from None
    return Doc(path, tree)


def load_yaml(path: Path, display: str | None = None) -> Doc:
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(Problem(shown, "file not found")) from None
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
            if "input" in err and err["type"] not in ("model_type", "dict_type"):
                msg += f", got {err['input']!r}"
            problems.append(Problem(doc.path, msg, line=doc.line_of(loc), key=loc_text(loc)))
        if len(problems) == 1:
            raise InputError(problems[0]) from None
        raise InputErrors(problems) from None


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
