"""Open Inference Protocol tensors: an inference request's body to named, typed, flat tensors.

No HTTP and no model here. ``read_request`` checks what the protocol itself requires of
a request (a JSON object whose ``inputs`` each have a name, a shape of non-negative
integers, a datatype and data) and reads the binary-data extension (tritonclient's
default: the JSON header's length in ``Inference-Header-Content-Length``, each input's
bytes after it, ``parameters.binary_data_size`` long, kept as views of the body: no copy).
``Elements`` gives one input's data flat and row-major, a range at a time, once the caller
has checked that its datatype is the one the model takes: binary FP64 is read in place, so
a request costs its body plus the rows in work, not a Python object per value. Every
refusal is a ``BadRequest`` naming the input and what is wrong.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import orjson

from streams.services.inference.errors import BadRequest

DATATYPES = ("FP64", "BYTES")  # BOOL joins them when the feature spec has a boolean kind
_NUMBERS = (int, float)
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """One input as sent: its data are a JSON list (nested or flat) or, binary, the raw bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list | bytes | memoryview

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    parameters: dict
    inputs: list[Tensor]
    outputs: list[str] | None  # the outputs asked for by name; None: every output


def read_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """The request in ``body``: all JSON, or ``header_length`` bytes of JSON then binary tensor data."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {header_length} is not within the body")
    view = memoryview(body)
    head, binary = (view, view[:0]) if header_length is None else (view[:header_length], view[header_length:])
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request is not valid JSON: {exc}") from None
    if type(request) is not dict:
        raise BadRequest("the request must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if type(inputs) is not list or not inputs:
        raise BadRequest("the request must have 'inputs', a non-empty list of tensors")
    tensors, offset = [], 0
    for position, spec in enumerate(inputs):
        tensor, offset = _tensor(spec, position, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data after the last input's")
    if len({t.name for t in tensors}) != len(tensors):
        seen: set[str] = set()
        repeated = next(t.name for t in tensors if t.name in seen or seen.add(t.name))
        raise BadRequest(f"input {repeated!r} is given more than once")
    request_id = request.get("id")
    parameters = request.get("parameters") or {}
    if request_id is not None and type(request_id) is not str:
        raise BadRequest("'id' must be a string")
    if type(parameters) is not dict:
        raise BadRequest("'parameters' must be an object")
    return InferRequest(request_id, parameters, tensors, _outputs(request.get("outputs")))


def _tensor(spec: object, position: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if type(spec) is not dict or type(spec.get("name")) is not str:
        raise BadRequest(f"input {position} must be an object with a string 'name'")
    name = spec["name"]
    shape, datatype = spec.get("shape"), spec.get("datatype")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape) or not shape:
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if type(datatype) is not str:
        raise BadRequest(f"input {name!r}: 'datatype' must be a string such as FP64 or BYTES")
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if type(parameters) is dict else None
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} is not within the binary data")
        return Tensor(name, datatype, tuple(shape), binary[offset : offset + size]), offset + size
    data = spec.get("data")
    if type(data) is not list:
        raise BadRequest(f"input {name!r}: 'data' must be a list (or the binary-data extension)")
    return Tensor(name, datatype, tuple(shape), data), offset


def _outputs(outputs: object) -> list[str] | None:
    if outputs is None:
        return None
    if type(outputs) is not list or not all(type(o) is dict and type(o.get("name")) is str for o in outputs):
        raise BadRequest("'outputs' must be a list of objects with a string 'name'")
    return [o["name"] for o in outputs]


def decode(tensor: Tensor) -> list:
    """The tensor's elements, flat and row-major: FP64 as floats, BYTES as strings; None is missing.

    A JSON ``null`` or, in binary FP64, a NaN stands for a missing value (what an event
    says by ``null``); infinities are refused, as an event cannot carry them either.
    """
    elements = Elements(tensor)
    return elements.take(0, len(elements))


class Elements:
    """A tensor's elements, checked whole, handed out a range at a time (``decode``'s values).

    Binary FP64 stays in the request's bytes until a range is taken; JSON data and BYTES are
    Python objects already (the parsed request), checked once.
    """

    def __init__(self, tensor: Tensor) -> None:
        if tensor.datatype not in DATATYPES:
            raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype} is not one of {DATATYPES}")
        self._array: np.ndarray | None = None
        self._values: list = []
        if isinstance(tensor.data, list):
            values = _flat(tensor.data, tensor.name)
            check = _json_number if tensor.datatype == "FP64" else _json_string
            self._values = [check(tensor.name, v) for v in values]
        elif tensor.datatype == "FP64":
            self._array = _fp64(tensor)
        else:
            self._values = _bytes_elements(tensor)
        count = len(self)
        if count != tensor.size:
            raise BadRequest(
                f"input {tensor.name!r}: shape {list(tensor.shape)} holds {tensor.size} values, "
                f"the data {count}"
            )

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else len(self._values)

    def take(self, start: int, stop: int) -> list:
        """Elements ``start`` to ``stop`` (flat positions) as Python values, NaN as None."""
        if self._array is None:
            return self._values[start:stop]
        return [None if v != v else v for v in self._array[start:stop].tolist()]


def _flat(data: list, name: str) -> list:
    if not any(type(v) is list for v in data):
        return data
    out: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                if len(stack) > 32:
                    raise BadRequest(f"input {name!r}: data nested deeper than 32 lists")
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _json_number(name: str, value: object) -> float | None:
    if value is None:
        return None
    if type(value) not in _NUMBERS:
        raise BadRequest(f"input {name!r}: FP64 data must be numbers, got {orjson.dumps(value)[:40]!r}")
    try:
        return float(value)
    except OverflowError:
        raise BadRequest(f"input {name!r}: {value} is out of the float range") from None


def _json_string(name: str, value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    raise BadRequest(f"input {name!r}: BYTES data must be strings, got {orjson.dumps(value)[:40]!r}")


def _fp64(tensor: Tensor) -> np.ndarray:
    data, name = tensor.data, tensor.name
    if len(data) % 8:
        raise BadRequest(f"input {name!r}: {len(data)} bytes of FP64 data is not a multiple of 8")
    array = np.frombuffer(data, dtype="<f8")  # a view of the request's bytes
    if np.isinf(array).any():
        raise BadRequest(f"input {name!r}: infinite values are not valid inputs")
    return array


def _bytes_elements(tensor: Tensor) -> list[str]:
    data, name = tensor.data, tensor.name
    values, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise BadRequest(f"input {name!r}: BYTES data cut inside an element's length")
        (length,) = _LENGTH.unpack_from(data, offset)
        element = bytes(data[offset + 4 : offset + 4 + length])
        if len(element) != length:
            raise BadRequest(f"input {name!r}: BYTES element {len(values)} is cut short")
        try:
            values.append(element.decode())
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES element {len(values)} is not UTF-8") from None
        offset += 4 + length
    return values
