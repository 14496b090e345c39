"""Bot Framework schema objects (msrest Models such as Activity) to their JSON form and back, as msrest does.

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
from typing import Any, TypeVar

from msrest.serialization import Deserializer, Model, Serializer

M = TypeVar("M", bound=Model)

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


def from_json(cls: type[M], data: Any) -> M:
    """`cls.deserialize(data)`, faster for plain JSON (see the module's docstring)."""
    if type(data) is dict:
        try:
            return _read_model(cls, data, _dependencies(cls))  # type: ignore[arg-type,return-value]  # classes hash; a cls instance
        except Exception:  # _NotPlain, or a value msrest would refuse: msrest says what
            pass
    return cls.deserialize(data)  # type: ignore[no-any-return,no-untyped-call]  # msrest is unannotated


@cache
def _dependencies(cls: type[Model]) -> dict[str, type]:
    """The classes msrest resolves declared type names against (those of the model's package)."""
    return dict(cls._infer_class_models())


@cache
def _read_plan(cls: type) -> tuple[dict[str, tuple[str, str]], dict[str, None]]:
    """JSON key -> (attribute, declared type), and every attribute as None (msrest passes them all to the
    model's constructor); _NotPlain for what msrest reads specially (see _plan), and for polymorphic models."""
    if cls.__dict__.get("_subtype_map") or "additional_properties" in cls._attribute_map:  # type: ignore[attr-defined]
        raise _NotPlain(cls.__name__)
    plan = _plan(cls)
    return {key: (attribute, declared) for attribute, key, declared in plan}, dict.fromkeys(a for a, _k, _d in plan)


def _read_model(cls: type, data: Any, dependencies: dict[str, type]) -> Model:
    if type(data) is not dict:
        raise _NotPlain(cls.__name__)  # msrest refuses it, or reads a model's attributes
    by_key, attributes = _read_plan(cls)
    values = dict(attributes)
    extra = {}
    for key, value in data.items():
        known = by_key.get(key)
        if known is None:
            extra[key] = value  # msrest's additional-properties detection: unknown keys, values as they are
        elif value is not None:
            values[known[0]] = _read(value, known[1], dependencies)
    model: Model = cls(**values)
    if extra:
        model.additional_properties = extra
    return model


def _read(value: Any, declared: str, dependencies: dict[str, type]) -> Any:
    basic = _BASIC.get(declared)
    if basic is not None:
        if type(value) is basic:
            return value
        raise _NotPlain(declared)  # msrest would convert it (str(5), float(1), ...)
    if declared == "object":
        return _read_object(value)
    if declared == "iso-8601" and type(value) is str:
        return Deserializer.deserialize_iso(value)  # msrest's own parsing
    if declared[0] == "[" and declared[-1] == "]":
        if type(value) is not list:
            raise _NotPlain(declared)
        return [None if item is None else _read(item, declared[1:-1], dependencies) for item in value]
    if declared[0] == "{" and declared[-1] == "}":
        if type(value) is not dict:
            raise _NotPlain(declared)
        return {key: None if item is None else _read(item, declared[1:-1], dependencies) for key, item in value.items()}
    model_class = dependencies.get(declared)
    if isinstance(model_class, type) and issubclass(model_class, Model):
        return _read_model(model_class, value, dependencies)
    raise _NotPlain(declared)  # an enum type, a date, bytes, a name msrest does not know


def _read_object(value: Any) -> Any:
    """msrest's deserialize_object for JSON: scalars as they are, dicts and lists copied."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict:
        return {key: None if item is None else _read_object(item) for key, item in value.items()}
    if kind is list:
        return [None if item is None else _read_object(item) for item in value]
    raise _NotPlain("object")
