"""Requests checked against the pinned SDK's own models, as API 3.0 checks them before any action runs.

Tencent's gateway knows every action's parameters: one it does not know is `UnknownParameter` ("The
parameter `Foo` is not recognized.", the wording the real service answers), and one of the wrong type
is `InvalidParameter` (the common code "for parameter errors, format and type included"). The names
and types here are the ones `tencentcloud/<service>/v<version>/models.py` of the installed SDK gives
for `<Action>Request`: its attributes (`_Name`) are the fields, and each `:type Name: ...` line of
its docstring the type (`str`, `int`, `bool`, `float`, `list of str`, `list of int non-negative`,
`:class:`...Foo``, `list of Foo`), nested models checked the same way. A misspelled field therefore
fails against the emulator as it would in the account.

A service without an installed SDK package (the Tag service here) and an action its models do not
name are not checked: the service itself answers, and an unknown action stays `InvalidAction`.
Models are read on first use and kept, so the emulator starts as fast as before.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from emulator.api import ApiError

_TYPE_LINE = re.compile(r":type (\w+): (.+)")
_MODEL = re.compile(r"^:class:`tencentcloud\.\w+\.v\d+\.models\.(\w+)`$")
_SCALARS = {"str": "String", "int": "Integer", "bool": "Boolean", "float": "Float"}


@dataclass(frozen=True)
class Kind:
    """What a field takes: a scalar (`String`, `Integer`, `Boolean`, `Float`) or a model, or a
    list of either; `non_negative` for the SDK's `list of int non-negative` (an unsigned integer)."""

    name: str
    model: bool = False
    is_list: bool = False
    non_negative: bool = False

    def __str__(self) -> str:
        return f"Array of {self.name}" if self.is_list else self.name


Fields = dict[str, Kind | None]  # None: the SDK gives no type, so any value passes


def check_request(service: str, version: str, action: str, params: dict[str, Any]) -> None:
    """Refuse `params` as the real API would: ApiError("UnknownParameter") for a field the action's
    request model (or a nested model) does not have, ApiError("InvalidParameter") for a value of the
    wrong type. Nothing is checked when the SDK has no models for the service or the action."""
    module = models_module(service, version)
    if module is None:
        return
    fields = model_fields(module, f"{action}Request")
    if fields is not None:
        _check_object(module, fields, params, "")


def models_module(service: str, version: str) -> ModuleType | None:
    """The installed SDK's models for `service` at `version` ("2019-01-16"), or None if none."""
    return _models_module(service, version)


@functools.cache
def _models_module(service: str, version: str) -> ModuleType | None:
    if not re.fullmatch(r"[a-z]+", service) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
        return None
    try:
        return importlib.import_module(f"tencentcloud.{service}.v{version.replace('-', '')}.models")
    except ImportError:
        return None


@functools.cache
def model_fields(module: ModuleType, name: str) -> Fields | None:
    """Field name -> Kind of the model class `name` in `module`; None if there is no such model."""
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        return None
    types = dict(_TYPE_LINE.findall(getattr(vars(cls).get("__init__"), "__doc__", None) or ""))
    names = [attr[1:] for attr in vars(cls()) if attr.startswith("_")]
    return {field: _kind(types.get(field, "")) for field in names}


def _kind(declared: str) -> Kind | None:
    declared = declared.strip()
    is_list = declared.startswith("list of ")
    base = declared[len("list of "):] if is_list else declared
    non_negative = base == "int non-negative"
    if non_negative:
        base = "int"
    if base in _SCALARS:
        return Kind(_SCALARS[base], is_list=is_list, non_negative=non_negative)
    model = _MODEL.match(base)
    if model:
        return Kind(model.group(1), model=True, is_list=is_list)
    if is_list and re.fullmatch(r"[A-Za-z]\w*", base):
        return Kind(base, model=True, is_list=True)
    return None


def _check_object(module: ModuleType, fields: Fields, value: dict[str, Any], prefix: str) -> None:
    for key, item in value.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ApiError("UnknownParameter", f"The parameter `{path}` is not recognized.")
        kind = fields[key]
        if kind is not None:
            _check_value(module, kind, item, path)


def _check_value(module: ModuleType, kind: Kind, value: Any, path: str) -> None:
    if value is None:  # JSON null: the service reads it as absent
        return
    if kind.is_list:
        if not isinstance(value, list):
            raise _wrong_type(path, kind, value)
        element = Kind(kind.name, kind.model, non_negative=kind.non_negative)
        for index, item in enumerate(value):
            _check_value(module, element, item, f"{path}.{index}")
        return
    if kind.model:
        fields = model_fields(module, kind.name)
        if not isinstance(value, dict):
            raise _wrong_type(path, kind, value)
        if fields is not None:
            _check_object(module, fields, value, f"{path}.")
        return
    if not _is_scalar(kind, value):
        raise _wrong_type(path, kind, value)


def _is_scalar(kind: Kind, value: Any) -> bool:
    # bool is an int in Python, never in JSON: True is no Integer, and 1 no Boolean.
    if kind.name == "String":
        return isinstance(value, str)
    if kind.name == "Boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind.name == "Integer":
        return isinstance(value, int) and (value >= 0 or not kind.non_negative)
    return isinstance(value, int | float)  # Float: an integer is a number too


def _wrong_type(path: str, kind: Kind, value: Any) -> ApiError:
    expected = f"non-negative {kind}" if kind.non_negative and not kind.is_list else str(kind)
    return ApiError("InvalidParameter",
                    f"The parameter `{path}` must be of type {expected}, not {_json_type(value)}.")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}" if value < 0 else "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
