"""Reading manifests: multi-document YAML in, resources or a complete list of problems out.

Every problem is one line that names the file, the line, the resource, the field path and
what was expected, so a typo is found without reading a stack trace::

    app.yaml:14: Supervisor/shop: spec.children[2].restart: must be one of permanent, \
transient, temporary

Nothing is started from a file that has any problem: :func:`load_files` returns either
resources or problems, and callers refuse to go on with problems.

A file is read within the limits of the README's "Manifest limits" (size here, the rest in
:mod:`rebeam.spec.safe_yaml`), so no file can make reading it crash, slow or large.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from rebeam._limits import TooLarge, read_bounded
from rebeam.spec.models import API_VERSION, Actor, Resource, Supervisor
from rebeam.spec.rules import problems as rule_problems
from rebeam.spec.safe_yaml import YamlRefused, read_documents, shown

__all__ = ["LoadResult", "ManifestError", "ManifestProblem", "load_files", "load_text"]

KINDS: dict[str, type[Supervisor] | type[Actor]] = {"Supervisor": Supervisor, "Actor": Actor}

FieldPath = tuple[str | int, ...]

MAX_FILE_BYTES: Final = 1024 * 1024
MAX_PROBLEMS: Final = 100  # listed one by one per file; the rest are counted


@dataclass(frozen=True)
class ManifestProblem:
    file: str
    line: int | None
    resource: str | None  # "Supervisor/shop", or None before the kind and name are known
    path: FieldPath
    message: str
    unlisted: int = 0  # >0: this line stands for that many problems not listed one by one

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.resource:
            parts.append(self.resource)
        if self.path:
            parts.append(format_path(self.path))
        return ": ".join([*parts, self.message])


class ManifestError(ValueError):
    """Raised by :meth:`LoadResult.raise_for_problems`; ``str()`` lists every problem."""

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class LoadResult:
    resources: list[Resource] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # each resource's file, line

    @property
    def problem_count(self) -> int:
        """Every problem found, also those not listed one by one."""
        return sum(p.unlisted or 1 for p in self.problems)

    def raise_for_problems(self) -> list[Resource]:
        if self.problems:
            raise ManifestError(self.problems)
        return self.resources


def format_path(path: FieldPath) -> str:
    """``("spec", "children", 2, "restart")`` -> ``spec.children[2].restart``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{_part(part)}" if text else part)
    return text


def _part(value: object) -> str:
    """A name from the manifest as part of a message: as it is if it is short and printable
    (a field name, a resource name), else quoted and cut short, so a problem stays one line."""
    if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 63:
        return value
    return shown(value)


def load_files(paths: Iterable[str | Path]) -> LoadResult:
    result = LoadResult()
    for path in paths:
        name = str(path)
        try:
            text = _read(Path(path))
        except _Unreadable as exc:
            result.problems.append(ManifestProblem(name, exc.line, None, (), exc.message))
            continue
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            result.problems.append(ManifestProblem(name, None, None, (), _reason(exc)))
            continue
        one = load_text(text, name)
        result.resources += one.resources
        result.problems += one.problems
        result.origins += one.origins
    result.problems += _duplicates(result)
    return result


def load_text(text: str, filename: str = "<manifest>") -> LoadResult:
    result = LoadResult()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        result.problems.append(ManifestProblem(filename, None, None, (), _too_large(str(size))))
        return result
    try:
        documents = read_documents(text)
    except YamlRefused as exc:
        result.problems.append(ManifestProblem(filename, exc.line, None, (), exc.message))
        return result
    if not documents:
        result.problems.append(ManifestProblem(filename, None, None, (), NO_MANIFEST))
    unlisted = 0
    for document in documents:
        budget = max(MAX_PROBLEMS - len(result.problems), 0)
        resource, problems, found = _load_document(document.data, document.node, filename, budget)
        if resource is not None:
            result.resources.append(resource)
            result.origins.append((filename, document.node.start_mark.line + 1))
        result.problems += problems
        unlisted += found - len(problems)
    if unlisted:
        noun = "problem" if unlisted == 1 else "problems"
        message = f"{unlisted} more {noun} not listed (the first {MAX_PROBLEMS} are)"
        result.problems.append(ManifestProblem(filename, None, None, (), message, unlisted))
    return result


NO_MANIFEST: Final = "no manifest in this file: expected a Supervisor or an Actor"


class _Unreadable(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _too_large(size: str) -> str:
    return f"file too large: {size} bytes, the limit is {MAX_FILE_BYTES} bytes (1 MiB)"


def _read(path: Path) -> str:
    """The file's text; never more than the size limit is read (it may be /dev/zero)."""
    try:
        data = read_bounded(path, MAX_FILE_BYTES)
    except TooLarge as exc:
        size = str(exc.size) if exc.size is not None else f"more than {MAX_FILE_BYTES}"
        raise _Unreadable(None, _too_large(size)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Unreadable(
            line, f"not UTF-8 text: byte 0x{data[exc.start]:02x} is not valid here"
        ) from None


def _load_document(
    document: Any, node: yaml.Node, filename: str, budget: int
) -> tuple[Resource | None, list[ManifestProblem], int]:
    """The resource, or at most ``budget`` problems and how many there were: finding the line
    of a problem costs time, and a hostile file can have a hundred thousand of them."""
    start = node.start_mark.line + 1

    def problem(resource: str | None, path: FieldPath, message: str) -> ManifestProblem:
        return ManifestProblem(filename, _line_of(node, path) or start, resource, path, message)

    if not isinstance(document, dict):
        found = [problem(None, (), "a manifest must be a mapping with apiVersion and kind")]
        return None, found[:budget], 1
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    label = f"{_part(kind)}/{_part(name)}" if isinstance(kind, str) and name else None
    if not isinstance(kind, str) or kind not in KINDS:
        expected = " or ".join(KINDS)
        found = [problem(label, ("kind",), f"must be {expected}, got {shown(kind)}")]
        return None, found[:budget], 1
    if document.get("apiVersion") != API_VERSION:
        got = shown(document.get("apiVersion"))
        found = [problem(label, ("apiVersion",), f"must be {API_VERSION}, got {got}")]
        return None, found[:budget], 1
    model = KINDS[kind]
    try:
        resource = model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        found = [problem(label, _path(e), _message(e, model)) for e in errors[:budget]]
        return None, found, len(errors)
    broken = rule_problems(resource)
    found = [problem(resource.ref, p.path, p.message) for p in broken[:budget]]
    found.sort(key=lambda p: p.line or 0)
    return (None, found, len(broken)) if broken else (resource, [], 0)


def _duplicates(result: LoadResult) -> list[ManifestProblem]:
    first: dict[tuple[str, str | None, str], tuple[str, int]] = {}
    found = []
    for resource, (file, line) in zip(result.resources, result.origins, strict=True):
        key = (resource.kind, resource.metadata.namespace, resource.metadata.name)
        if key in first:
            where = "{}:{}".format(*first[key])
            message = f"defined more than once (first at {where})"
            found.append(ManifestProblem(file, line, resource.ref, (), message))
        else:
            first[key] = (file, line)
    return found


# --- pydantic errors, in words a manifest author reads -------------------------------------


def _path(error: ErrorDetails) -> FieldPath:
    # pydantic adds the name of a union member or a validator function to some locations;
    # those are not fields of the manifest.
    return tuple(
        part
        for part in error["loc"]
        if isinstance(part, int) or not (part.startswith("function-") or "[" in part)
    )


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}"
    if kind == "extra_forbidden":
        return _unknown_field(error, model)
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    simple = {
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
    }
    if kind in simple:
        return simple[kind]
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    return error["msg"]


def _unknown_field(error: ErrorDetails, root: type[BaseModel]) -> str:
    name = str(error["loc"][-1])
    known = _known_fields(root, error["loc"][:-1])
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    listing = f"; expected one of {', '.join(sorted(known))}" if known and not close else ""
    return f"unknown field {shown(name)}{hint}{listing}"


def _known_fields(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names allowed at ``loc`` under ``model``, by walking the annotations."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# --- line numbers ------------------------------------------------------------------------


def _line_of(node: yaml.Node, path: FieldPath) -> int | None:
    """The line of the deepest node on ``path`` that exists (1-based)."""
    line = node.start_mark.line + 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    line = key.start_mark.line + 1
                    child = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line
