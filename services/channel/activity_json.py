"""Bot Framework schema objects (msrest Models such as Activity) to their JSON form, as msrest does.

msrest's `Model.serialize()` and its `Serializer.body()` (which the SDK's Connector client calls for
every reply) walk the attribute map through generic, per-value dispatch, and `body()` validates and
deserializes the model into itself first: about 0.5-0.7 ms per activity, three or four times a turn
(the reply's request body, the transcript's copy of the inbound and the outbound activity).
`to_json` walks a per-class plan instead and gives the same dict for the values msrest handles
without conversion: plain str, int, float, bool (and enums where a str is declared), datetimes, lists and dicts of them,
nested models whose fields hold models. Anything else (a dict where a model is declared, bytes, a model
class with validation rules or flattened keys) falls back to msrest for the whole object, so the result is always
msrest's own.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

from msrest.serialization import Model, Serializer

_BASIC = {"str": str, "int": int, "float": float, "bool": bool}
_JSON_SCALARS = (str, int, float, bool)


class _NotPlain(Exception):
    """A value msrest would convert: let msrest serialize the whole object."""


def to_json(model: Model) -> dict[str, Any]:
    """`model.serialize()`, faster for plain values (see the module's docstring)."""
    try:
        return _model(model)
    except _NotPlain:
        return dict(model.serialize())


@cache
def _plan(cls: type) -> tuple[tuple[str, str, str], ...]:
    """(attribute, JSON key, declared type) per attribute msrest writes; _NotPlain for a class msrest
    treats specially (validation rules, flattened or escaped keys, XML)."""
    if getattr(cls, "_validation", None) or getattr(cls, "_xml_map", None):
        raise _NotPlain(cls.__name__)
    plan = []
    for attribute, description in cls._attribute_map.items():  # type: ignore[attr-defined]  # msrest's models
        key = description["key"]
        if "." in key or "\\" in key or description.get("xml") or not key:
            raise _NotPlain(cls.__name__)
        plan.append((attribute, key, description["type"]))
    return tuple(plan)


def _model(model: Model) -> dict[str, Any]:
    serialized: dict[str, Any] = {}
    for attribute, key, declared in _plan(type(model)):  # type: ignore[arg-type]  # classes hash by identity
        value = getattr(model, attribute)
        if value is not None:  # msrest leaves out what is None
            serialized[key] = _value(value, declared)
    return serialized


def _value(value: Any, declared: str) -> Any:
    basic = _BASIC.get(declared)
    if basic is not None:
        if type(value) is basic:
            return value
        if basic is str and isinstance(value, Enum):
            return value.value  # msrest's serialize_unicode: an enum's value (ActivityTypes.message -> "message")
        raise _NotPlain(declared)  # a value msrest would convert
    if declared == "object":
        return _object(value)
    if declared == "iso-8601" and type(value) is datetime:
        return Serializer.serialize_iso(value)  # msrest's own formatting
    if declared[0] == "[" and declared[-1] == "]":
        if type(value) is not list:
            raise _NotPlain(declared)
        return [None if item is None else _value(item, declared[1:-1]) for item in value]
    if declared[0] == "{" and declared[-1] == "}":
        if type(value) is not dict or any(type(key) is not str for key in value):
            raise _NotPlain(declared)
        return {key: None if item is None else _value(item, declared[1:-1]) for key, item in value.items()}
    if isinstance(value, Model) and type(value).__name__ == declared:
        return _model(value)
    raise _NotPlain(declared)  # a date, bytes, an enum type, a dict where a model is declared


def _object(value: Any) -> Any:
    """msrest's serialize_object for JSON-native values and models."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict:
        if any(type(key) is not str for key in value):
            raise _NotPlain("object")
        return {key: None if item is None else _object(item) for key, item in value.items()}
    if kind is list:
        # msrest drops an item that fails, not one that is None; a None item stays None.
        return [None if item is None else _object(item) for item in value]
    if isinstance(value, Model):
        return _model(value)
    raise _NotPlain("object")


class PlainBodySerializer(Serializer):
    """A Connector client's serializer whose request bodies take `to_json` for a plain model of the
    declared type, and msrest's own `body()` otherwise."""

    def body(self, data: Any, data_type: str, **kwargs: Any) -> Any:
        if isinstance(data, Model) and type(data).__name__ == data_type and not kwargs:
            try:
                return _model(data)
            except _NotPlain:
                pass
        return super().body(data, data_type, **kwargs)  # type: ignore[no-untyped-call]  # msrest is unannotated


def use_plain_bodies(client: Any) -> None:
    """Give a botframework ConnectorClient's operation groups a PlainBodySerializer (same models)."""
    serializer = PlainBodySerializer(client._serialize.dependencies)  # type: ignore[no-untyped-call]  # msrest's init
    serializer.client_side_validation = client._serialize.client_side_validation
    client._serialize = serializer
    for group in ("conversations", "attachments"):
        operations = getattr(client, group, None)
        if operations is not None and hasattr(operations, "_serialize"):
            operations._serialize = serializer
