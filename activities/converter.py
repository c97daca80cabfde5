"""The Temporal data converter Cashcycle's clients and workers use: Temporal's own, with a faster
`json/plain` converter for the frozen dataclasses of `workflows.types`.

Every command, activity call and update result crosses the converter (a TransitionRecord carries the
whole InvoiceState). Temporal's JSON converter encodes a dataclass with `dataclasses.asdict`, which
deep-copies every value, and decodes it with `typing.get_type_hints` on every class of every payload;
`make bench` measured some 10 ms of CPU per invoice in them. Here each dataclass's fields and their
decoders are resolved once, and encoding reads the fields without copying.

The payloads are the same bytes as Temporal's converter writes (the same JSON, keys sorted, the same
`json/plain` encoding), so either side may run either converter; tests/activities/test_converter.py
checks both directions for every type of `workflows.types`. Types other than those dataclasses, and
type hints the decoders below do not know, go to Temporal's converter unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    value_to_type,
)

from workflows import types as wtypes

Decoder = Callable[[Any], Any]

# The dataclasses that get the fast path: the ones that cross the workflow boundary.
FAST_TYPES = frozenset(
    obj
    for obj in vars(wtypes).values()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == wtypes.__name__
)


class _Encoder(AdvancedJSONEncoder):
    """Temporal's encoder, but a dataclass becomes a dict of its fields as they are (json recurses into
    nested dataclasses and lists itself), not a deep copy made by `dataclasses.asdict`."""

    def default(self, o: Any) -> Any:
        fields = _FIELD_NAMES.get(type(o))
        if fields is not None:
            return {name: getattr(o, name) for name in fields}
        return super().default(o)


_FIELD_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in FAST_TYPES}


def _primitive(kind: type) -> Decoder:
    def decode(value: Any) -> Any:
        # bool is an int in Python, and JSON has no int/float distinction for whole numbers.
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return decode


@cache
def _decoder(hint: Any) -> Decoder:
    """A decoder from JSON values to `hint`, built once per hint."""
    if hint in (str, int, bool, float):
        return _primitive(hint)
    if hint is Any:
        return lambda value: value
    if hint in FAST_TYPES:
        return _dataclass_decoder(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = _decoder(args[0] if args[1] is type(None) else args[1])
        return lambda value: None if value is None else inner(value)
    if origin is list and len(args) == 1:
        item = _decoder(args[0])

        def decode_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return [item(v) for v in value]

        return decode_list
    # Anything else (dicts, tuples, unions of several types...): Temporal's own conversion.
    return lambda value: value_to_type(hint, value)


def _dataclass_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init]
    # Resolved lazily: a dataclass may refer to itself or to one whose decoder is being built.
    resolved: list[tuple[str, Decoder]] = []

    def decode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"cannot convert to dataclass {cls.__name__}: value is {type(value).__name__}")
        if not resolved:
            resolved.extend((name, _decoder(hint)) for name, hint in fields)
        kwargs = {}
        for name, field_decoder in resolved:
            if name in value:
                try:
                    kwargs[name] = field_decoder(value[name])
                except Exception as err:
                    raise TypeError(f"failed converting field {name} on dataclass {cls.__name__}") from err
        # Unknown keys are ignored and missing required fields make the constructor raise, as Temporal's.
        return cls(**kwargs)

    return decode


class FastJSONPlainPayloadConverter(JSONPlainPayloadConverter):
    def __init__(self) -> None:
        super().__init__(encoder=_Encoder)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        if type_hint is None:
            return super().from_payload(payload, type_hint)
        try:
            obj = json.loads(payload.data)
        except json.JSONDecodeError as err:
            raise RuntimeError("Failed parsing") from err
        return _decoder(type_hint)(obj)


class CashcyclePayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with the JSON one replaced."""

    def __init__(self) -> None:
        super().__init__(
            *(
                FastJSONPlainPayloadConverter() if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = dataclasses.replace(DataConverter.default, payload_converter_class=CashcyclePayloadConverter)
