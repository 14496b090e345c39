"""Bot state to JSON and back in jsonpickle's format (as the SDK's storages write it), about ten times faster.

jsonpickle is general and slow: per value it asks a dozen questions (handlers, __reduce__, __getstate__,
slots, ...). Bot state holds few kinds of values: JSON primitives, dicts and lists, the SDK's plain
classes (DialogState, DialogInstance, PromptOptions, Choice, Activity and the other msrest models) and
enum members (ActivityTypes, InputHints, ListStyle). This codec answers those questions once per class
and writes what jsonpickle's Pickler writes for them (the same "py/object", "py/reduce" and "py/id" tags,
numbered the same way), with one difference: msrest models without their unset attributes (COMPACT_MODELS),
in a form jsonpickle's Unpickler also restores to the same objects. So documents written by either are read
by either: those stored before the codec, and those an earlier release reads after a rollback. Anything
else in a state (a tuple, a set, bytes, a class with its own __getstate__ or __reduce__, a key jsonpickle
would rewrite) makes the whole state go through jsonpickle instead; so does a document this codec does not
read itself.

What a later jsonpickle or SDK release could change: jsonpickle's tags or numbering (tests/unit/
test_state_codec.py compares this codec with the installed jsonpickle, so a change shows there); an SDK class
gaining __getstate__/__reduce__/__slots__ (it then goes through jsonpickle: slower, same JSON); an msrest
model whose constructor needs arguments (written in full from then on, but its compact documents no longer
restore) or whose attribute defaults stop being None (an attribute stored as unset comes back as the new
default).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from jsonpickle import Pickler, Unpickler, handlers, tags, util
from jsonpickle.unpickler import loadclass
from msrest.serialization import Model

_PRIMITIVES = frozenset({str, int, float, bool, type(None)})
# Keys that make the Unpickler read a dict as something else (tags.RESERVED leaves out the bytes tags).
_RESERVED = frozenset(tags.RESERVED | {tags.B64, tags.B85, tags.BYTES})
_OBJECT, _REDUCE, _ID, _TYPE, _TUPLE = tags.OBJECT, tags.REDUCE, tags.ID, tags.TYPE, tags.TUPLE
# A key the Unpickler treats specially in an object's attributes (it takes it as the factory of a defaultdict).
_FACTORY_KEY = "default_factory"
# Hooks that make the Pickler write constructor arguments too.
_ARGUMENT_HOOKS = ("__getnewargs__", "__getnewargs_ex__", "__getinitargs__")


class _Unsupported(Exception):
    """A value this codec does not write (or read) the way jsonpickle does: jsonpickle takes the whole state."""


# Write msrest models (Activity and the schema's other classes) without their unset attributes, as a
# "py/reduce" that calls the class with no arguments (setting them all to None) and then sets the others.
# An Activity has ~45 attributes, most of them None: a prompt's is a third of its full size, a conversation
# at the menu ~27 % smaller. jsonpickle's Unpickler restores the same objects from it. A document stored in
# full is written compactly by its next save. False: jsonpickle's exact output.
COMPACT_MODELS = True

# What jsonpickle does with instances of a class: _PLAIN ({"py/object": name, **attributes}),
# _ENUM ({"py/reduce": [{"py/type": name}, {"py/tuple": [value]}]}) or None (not handled here); _MODEL:
# a _PLAIN msrest model that can be written compactly:
# {"py/reduce": [{"py/type": name}, {"py/tuple": []}, {**attributes that are not None}]}.
_PLAIN, _ENUM, _MODEL = "plain", "enum", "model"
_NOTHING: frozenset[str] = frozenset()
_shapes: dict[type, tuple[str | None, str, frozenset[str]]] = {}


def _shape_of(cls: type, instance: object) -> tuple[str | None, str, frozenset[str]]:
    """How jsonpickle's Pickler writes instances of `cls` (decided on its first instance), its name, and
    for a _MODEL the attributes that a call with no arguments sets to None."""
    known = _shapes.get(cls)
    if known is not None:
        return known
    name = util.importable_name(cls)
    shape: str | None = None
    unset = _NOTHING
    if handlers.get(cls, handlers.get(name)) is None:  # a registered handler writes its own form
        if isinstance(instance, enum.Enum):
            # Enum.__reduce_ex__ gives (class, (value,)): the Pickler writes that as py/reduce.
            if util.has_reduce(instance)[1] and instance.__reduce_ex__(2) == (cls, (instance._value_,)):
                shape = _ENUM
        elif _is_plain(cls, instance):
            shape = _PLAIN
            if _is_model(cls):
                shape = _MODEL
                unset = frozenset(key for key, value in vars(cls()).items() if value is None)
    _shapes[cls] = (shape, name, unset)
    return shape, name, unset


def _is_model(cls: type) -> bool:
    """An msrest model the Unpickler restores from the compact form: called with no arguments, then its
    __dict__ updated (it has no __setstate__)."""
    if not issubclass(cls, Model) or hasattr(cls, "__setstate__"):
        return False
    try:
        cls()
    except Exception:  # a model that needs arguments: written in full
        return False
    return True


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

    def __init__(self, compact_models: bool) -> None:
        self._ids: dict[int, int] = {}
        self._compact_models = compact_models

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
        shape, name, unset = _shape_of(kind, value)
        if shape is _MODEL and self._compact_models:
            # The Unpickler numbers the attributes' dict too: a number nothing refers to (a negative key
            # is no object's id).
            ids[~len(ids)] = len(ids)
            attributes = {key: item for key, item in value.__dict__.items() if item is not None or key not in unset}
            return {_REDUCE: [{_TYPE: name}, {_TUPLE: []}, self._items(attributes, {})]}
        if shape is _PLAIN or shape is _MODEL:
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
        elif _is_model(cls):
            found = (_MODEL, cls)
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
                    reduce = value[_REDUCE]
                    return self._model(reduce) if type(reduce) is list and len(reduce) == 3 else self._enum(value)
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
        if found is None or found[0] is _ENUM or _FACTORY_KEY in value:
            raise _Unsupported(name)
        cls = found[1]
        try:
            instance = cls.__new__(cls)  # type: ignore[call-overload]  # cls is a plain class here, not a metaclass
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

    def _model(self, reduce: list[Any]) -> Any:
        """The compact form of an msrest model, restored as the Unpickler restores that py/reduce."""
        kind, arguments, attributes = reduce
        if not (
            type(kind) is dict
            and kind.keys() == {_TYPE}
            and type(kind[_TYPE]) is str
            and arguments == {_TUPLE: []}
            and type(attributes) is dict
        ):
            raise _Unsupported(_REDUCE)
        found = _class_named(kind[_TYPE])
        if found is None or found[0] is not _MODEL:
            raise _Unsupported(kind[_TYPE])
        instance = found[1]()
        self._objects.append(instance)
        state = self.decode(attributes)
        if type(state) is not dict:
            raise _Unsupported(_REDUCE)
        if state:
            for key, item in instance.__dict__.items():
                state.setdefault(key, item)
            instance.__dict__ = state
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


def flatten(state: Any, compact_models: bool | None = None) -> Any:
    """What jsonpickle's Pickler().flatten(state) returns, but for msrest models in their compact form
    (if compact_models, default COMPACT_MODELS); jsonpickle's Unpickler restores it to equal objects."""
    try:
        return _Encoder(COMPACT_MODELS if compact_models is None else compact_models).encode(state)
    except _Unsupported:
        return Pickler().flatten(state)


def restore(document: Any) -> Any:
    """What jsonpickle's Unpickler().restore(document) returns."""
    try:
        return _Decoder().decode(document)
    except _Unsupported:
        return Unpickler().restore(document)
