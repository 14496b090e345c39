"""Bot state to JSON and back, writing exactly what jsonpickle (as the SDK's storages call it) writes.

jsonpickle is general and slow: per value it asks a dozen questions (handlers, __reduce__, __getstate__,
slots, ...). Bot state holds few kinds of values: JSON primitives, dicts and lists, the SDK's plain
classes (DialogState, DialogInstance, PromptOptions, Choice, Activity and the other msrest models) and
enum members (ActivityTypes, InputHints, ListStyle). This codec answers those questions once per class
and writes the same JSON for them as jsonpickle's Pickler (the same "py/object", "py/reduce" and "py/id"
tags, numbered the same way), so documents written by either are read by either. Anything else in a
state (a tuple, a set, bytes, a class with its own __getstate__ or __reduce__, a key jsonpickle would
rewrite) makes the whole state go through jsonpickle instead, so the result is always jsonpickle's.

What a later jsonpickle or SDK release could change: jsonpickle's tags or numbering (tests/unit/
test_state_codec.py compares this codec with the installed jsonpickle, so a change shows there), or an
SDK class gaining __getstate__/__reduce__/__slots__ (it then falls back to jsonpickle: slower, same JSON).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from jsonpickle import Pickler, Unpickler, handlers, tags, util
from jsonpickle.unpickler import loadclass

_PRIMITIVES = frozenset({str, int, float, bool, type(None)})
_RESERVED = frozenset(tags.RESERVED)
_OBJECT, _REDUCE, _ID, _TYPE, _TUPLE = tags.OBJECT, tags.REDUCE, tags.ID, tags.TYPE, tags.TUPLE
# A key the Unpickler treats specially in an object's attributes (it takes it as the factory of a defaultdict).
_FACTORY_KEY = "default_factory"
# Hooks that make the Pickler write constructor arguments too.
_ARGUMENT_HOOKS = ("__getnewargs__", "__getnewargs_ex__", "__getinitargs__")


class _Unsupported(Exception):
    """A value this codec does not write (or read) the way jsonpickle does: jsonpickle takes the whole state."""


# What jsonpickle does with instances of a class: _PLAIN ({"py/object": name, **attributes}),
# _ENUM ({"py/reduce": [{"py/type": name}, {"py/tuple": [value]}]}) or None (not handled here).
_PLAIN, _ENUM = "plain", "enum"
_shapes: dict[type, tuple[str | None, str]] = {}


def _shape_of(cls: type, instance: object) -> tuple[str | None, str]:
    """How jsonpickle's Pickler writes instances of `cls` (decided on its first instance), and its name."""
    known = _shapes.get(cls)
    if known is not None:
        return known
    name = util.importable_name(cls)
    shape: str | None = None
    if handlers.get(cls, handlers.get(name)) is None:  # a registered handler writes its own form
        if isinstance(instance, enum.Enum):
            # Enum.__reduce_ex__ gives (class, (value,)): the Pickler writes that as py/reduce.
            if util.has_reduce(instance)[1] and instance.__reduce_ex__(2) == (cls, (instance._value_,)):
                shape = _ENUM
        elif _is_plain(cls, instance):
            shape = _PLAIN
    _shapes[cls] = (shape, name)
    return shape, name


def _is_plain(cls: type, instance: object) -> bool:
    """An instance the Pickler writes as its class name and its __dict__ (the path it takes for a class
    with no pickling hooks of its own), and the Unpickler restores with cls.__new__ and setattr."""
    return (
        cls.__module__ != "builtins"  # functions, types, modules, ...: jsonpickle has its own forms for them
        and not isinstance(instance, type)
        and not util.is_function(instance)
        and hasattr(instance, "__dict__")
        and util.has_reduce(instance) == (False, False)
        and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
        and not any(util.has_method(instance, hook) for hook in _ARGUMENT_HOOKS)
        and not util.is_dictionary_subclass(instance)
        and not util.is_sequence_subclass(instance)
        and not util.is_iterator(instance)
        and not util.is_module(instance)
        and not hasattr(instance, "_jsonpickle_exclude")
        and not hasattr(cls, "__slots__")
    )


class _Encoder:
    """One flatten: numbers dicts, lists and objects in the order the Pickler meets them, for "py/id"."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def encode(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PRIMITIVES:
            return value
        ids = self._ids
        ref = ids.get(id(value))
        if ref is not None:
            return {_ID: ref}
        ids[id(value)] = len(ids)
        if kind is dict:
            return self._items(value, {})
        if kind is list:
            encode = self.encode
            return [item if type(item) in _PRIMITIVES else encode(item) for item in value]
        shape, name = _shape_of(kind, value)
        if shape is _PLAIN:
            return self._items(value.__dict__, {_OBJECT: name})
        if shape is _ENUM:
            member = value._value_
            if type(member) not in _PRIMITIVES:
                raise _Unsupported(name)
            return {_REDUCE: [{_TYPE: name}, {_TUPLE: [member]}]}
        raise _Unsupported(name)

    def _items(self, items: Mapping[Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        encode = self.encode
        for key, value in items.items():
            # The Pickler drops reserved keys and rewrites others (None, numbers): leave those to it.
            if type(key) is not str or key in _RESERVED:
                raise _Unsupported(repr(key))
            data[key] = value if type(value) in _PRIMITIVES else encode(value)
        return data


# Classes named in documents, as the Unpickler would load them; None: not restored here.
_classes: dict[str, tuple[str, type] | None] = {}


def _class_named(name: str) -> tuple[str, type] | None:
    if name in _classes:
        return _classes[name]
    found: tuple[str, type] | None = None
    cls = loadclass(name)  # the Unpickler's own lookup
    if isinstance(cls, type) and handlers.get(cls, handlers.get(name)) is None:
        if issubclass(cls, enum.Enum):
            found = (_ENUM, cls)
        elif cls.__module__ != "builtins" and not issubclass(cls, (dict, list, tuple, set, type)):
            found = (_PLAIN, cls)  # the Unpickler sets its attributes one by one (dict subclasses: items)
    _classes[name] = found
    return found


class _Decoder:
    """One restore: keeps dicts, lists and objects in the order the Unpickler numbers them, for "py/id"."""

    def __init__(self) -> None:
        self._objects: list[Any] = []

    def decode(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            if _OBJECT in value:
                return self._object(value)
            if _RESERVED.isdisjoint(value):
                data: dict[str, Any] = {}
                self._objects.append(data)
                decode = self.decode
                for key, item in value.items():
                    data[key] = item if type(item) in _PRIMITIVES else decode(item)
                return data
            if len(value) == 1:
                if _ID in value:
                    return self._reference(value[_ID])
                if _REDUCE in value:
                    return self._enum(value)
            raise _Unsupported(sorted(value.keys() & _RESERVED))
        if kind is list:
            items: list[Any] = []
            self._objects.append(items)
            decode = self.decode
            items.extend([item if type(item) in _PRIMITIVES else decode(item) for item in value])
            return items
        return value

    def _reference(self, index: Any) -> Any:
        if type(index) is not int or not 0 <= index < len(self._objects):
            raise _Unsupported(index)
        return self._objects[index]

    def _object(self, value: dict[str, Any]) -> Any:
        name = value[_OBJECT]
        found = _class_named(name) if type(name) is str else None
        if found is None or found[0] is not _PLAIN or _FACTORY_KEY in value:
            raise _Unsupported(name)
        cls = found[1]
        try:
            instance = cls.__new__(cls)
        except TypeError as error:  # the Unpickler has other ways for such a class
            raise _Unsupported(name) from error
        self._objects.append(instance)
        decode = self.decode
        for key, item in value.items():
            if key.startswith(("__", "py/")):
                if key == _OBJECT:
                    continue
                raise _Unsupported(key)  # another tag, or a name the Unpickler mangles
            setattr(instance, key, item if type(item) in _PRIMITIVES else decode(item))
        return instance

    def _enum(self, value: dict[str, Any]) -> Any:
        reduce = value[_REDUCE]
        if not (
            type(reduce) is list
            and len(reduce) == 2
            and type(reduce[0]) is dict
            and reduce[0].keys() == {_TYPE}
            and type(reduce[1]) is dict
            and reduce[1].keys() == {_TUPLE}
            and type(reduce[1][_TUPLE]) is list
            and len(reduce[1][_TUPLE]) == 1
            and type(reduce[1][_TUPLE][0]) in _PRIMITIVES
            and type(reduce[0][_TYPE]) is str
        ):
            raise _Unsupported(_REDUCE)
        found = _class_named(reduce[0][_TYPE])
        if found is None or found[0] is not _ENUM:
            raise _Unsupported(reduce[0][_TYPE])
        member = found[1](reduce[1][_TUPLE][0])
        self._objects.append(member)
        return member


def flatten(state: Any) -> Any:
    """What jsonpickle's Pickler().flatten(state) returns."""
    try:
        return _Encoder().encode(state)
    except _Unsupported:
        return Pickler().flatten(state)


def restore(document: Any) -> Any:
    """What jsonpickle's Unpickler().restore(document) returns."""
    try:
        return _Decoder().decode(document)
    except _Unsupported:
        return Unpickler().restore(document)
