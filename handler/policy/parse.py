"""Policy text (YAML or JSON) into a validated PolicyFile, with every problem named by its field
path. Imported only when a policy is given: YAML and the rule models cost a cold start ~40 ms."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from handler.policy.loader import PolicyError
from handler.policy.rules import PolicyFile

# ---- YAML without its traps ----------------------------------------------------------------------


class _PolicyLoader(yaml.SafeLoader):
    """YAML 1.1 reads `yes`, `no`, `on` and `off` as booleans — a tag value `no` would silently
    become `false` ("absent"). Here only true/false are booleans, and a repeated key is an error
    rather than a silent overwrite of the first (a second `rules:` would drop the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {seen[key].line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def _parse_text(text: str, source: str) -> Any:
    """Policy text is YAML, JSON included. JSON is read as JSON first: PyYAML (YAML 1.1) refuses
    some valid JSON, such as a tab before a value. Anything else, a one-line flow mapping
    `{version: 1, rules: [...]}` too, is read as YAML."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass  # not JSON: YAML has the last word, and its error is the one told
    try:
        return yaml.load(text, Loader=_PolicyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if "'*'" in problem or "alias" in problem:
            # In YAML a bare *word is a reference to an anchor, not text.
            problem += " (a glob that starts with * must be quoted: '*quota*')"
        raise PolicyError(f"{source}: not valid YAML: {where}{problem}") from None


def parse_policy(text: str, source: str = "inline policy") -> PolicyFile:
    data = _parse_text(text, source)
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with `version: 1` and `rules:`, got "
                          f"{type(data).__name__}")
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as e:
        problems = [p for err in e.errors() for p in _describe(err, data)]
        head = f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise PolicyError(head + "\n" + "\n".join(f"  - {p}" for p in problems)) from None


# ---- error messages ------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...], data: Any) -> str:
    """`rules[2] 'spot'.when.exit_code` from pydantic's loc, naming rules by their name."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and out.startswith("rules["):
                out += f" {node['name']!r}"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class whose fields `loc` points into."""
    model: Any = PolicyFile
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        model = _inner_model(fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _inner_model(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return annotation


def _describe(err: Any, data: Any) -> list[str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))  # drop union tags
    path = _path(loc, data) or "(top level)"
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted((f.alias or n) for n, f in parent.model_fields.items()) if parent else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        return [f"{path}: unknown field{mean}; allowed: {', '.join(allowed)}"]
    if kind == "missing":
        return [f"{path}: required"]
    msg = msg.removeprefix("Value error, ")
    if kind == "value_error":
        if loc == ():  # the whole file's cross-field checks name their own paths
            return msg.splitlines()
        if len(loc) == 2 and loc[0] == "rules":  # a rule's own check names the rule's field
            return [f"{path}.{msg}"]
        return [f"{path}: {msg}"]
    return [f"{path}: {msg}, got {_got(err['input'])}" if "input" in err else f"{path}: {msg}"]


def _got(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
