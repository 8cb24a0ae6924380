"""The inputs a model takes over the inference protocol, and a request's tensors as feature events.

Two layouts, both listed by the metadata endpoint:

- one tensor per feature, named after it: FP64 for a numeric feature, BYTES for a
  categorical one, shape ``[batch]`` or ``[batch, 1]``; an optional feature may be left
  out, and a ``null`` (or a NaN in binary FP64) is a missing value, as in an event;
- one FP64 tensor ``features`` of shape ``[batch, n_features]`` in the spec's order, a
  categorical column holding the category's code (its position in the metadata's
  ``categories``), as LightGBM and MLServer's LightGBM runtime take it.

Each row becomes the feature event the stream would carry (``event_id``, ``entity_id``,
``event_time``, ``features``), encoded as a producer would, so the stream's own validator
sees it. Entities: an ``entity_id`` BYTES input (one per row) or the request parameter
``entity_id`` (a string for every row, or a list of one per row); without either, a row is
its own entity (its event id), so a split sends it to a model by chance. Event ids: an
``event_id`` BYTES input, else ``{request id}-{row}``. A feature named like one of these
reserved inputs takes the name, and the reserved input is not offered for that model.
"""

from __future__ import annotations

import orjson

from scoring.model.features import FeatureKind, FeatureSpec
from streams.services.inference.errors import BadRequest
from streams.services.inference.tensors import InferRequest, Tensor, decode

MATRIX_INPUT = "features"
ENTITY_INPUT = "entity_id"
EVENT_INPUT = "event_id"
_DATATYPE = {FeatureKind.numeric: "FP64", FeatureKind.categorical: "BYTES"}


class Layout:
    """The protocol's view of one feature spec: input names, datatypes, and how a row becomes an event."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.features = {f.name: f for f in spec.features}
        self.reserved = {
            name: datatype
            for name, datatype in ((MATRIX_INPUT, "FP64"), (ENTITY_INPUT, "BYTES"), (EVENT_INPUT, "BYTES"))
            if name not in self.features
        }
        self.datatypes = {f.name: _DATATYPE[f.kind] for f in spec.features} | self.reserved

    def metadata_inputs(self) -> list[dict]:
        inputs = []
        for feature in self.spec.features:
            parameters: dict = {"kind": feature.kind.value, "required": feature.required}
            if feature.kind is FeatureKind.categorical:
                parameters["categories"] = feature.categories
            inputs.append(
                {
                    "name": feature.name,
                    "datatype": self.datatypes[feature.name],
                    "shape": [-1],
                    "parameters": parameters,
                }
            )
        return inputs

    def metadata_parameters(self) -> dict:
        optional = {}
        if MATRIX_INPUT in self.reserved:
            optional[MATRIX_INPUT] = {
                "datatype": "FP64",
                "shape": [-1, len(self.features)],
                "instead_of": "the feature inputs, in feature_order; categorical columns as codes",
            }
        for name in (ENTITY_INPUT, EVENT_INPUT):
            if name in self.reserved:
                optional[name] = {"datatype": "BYTES", "shape": [-1]}
        return {"feature_order": self.spec.names, "optional_inputs": optional}

    def events(self, request: InferRequest, now_ms: int, request_id: str) -> list[bytes]:
        """One encoded feature event per row of ``request``."""
        given = {t.name: t for t in request.inputs}
        for tensor in request.inputs:
            expected = self.datatypes.get(tensor.name)
            if expected is None:
                raise BadRequest(f"unknown input {tensor.name!r}: the model's inputs are {self.spec.names}")
            if tensor.datatype != expected:
                raise BadRequest(
                    f"input {tensor.name!r} must be {expected}{self._what(tensor.name)}, "
                    f"got {tensor.datatype}"
                )
        if MATRIX_INPUT in given and MATRIX_INPUT in self.reserved:
            beside = [name for name in given if name in self.features]
            if beside:
                raise BadRequest(f"input {beside[0]!r} beside {MATRIX_INPUT!r}: send one layout or the other")
            rows = self._matrix_rows(given[MATRIX_INPUT])
        else:
            rows = self._feature_rows(given)
        n = len(rows)
        event_ids = self._ids(given.get(EVENT_INPUT), None, n) or [f"{request_id}-{i}" for i in range(n)]
        entity_ids = self._ids(given.get(ENTITY_INPUT), request.parameters.get(ENTITY_INPUT), n) or event_ids
        dumps = orjson.dumps
        return [
            dumps({"event_id": e, "entity_id": k, "event_time": now_ms, "features": row})
            for e, k, row in zip(event_ids, entity_ids, rows, strict=True)
        ]

    def _what(self, name: str) -> str:
        feature = self.features.get(name)
        return f" (a {feature.kind.value} feature)" if feature is not None else ""

    def _feature_rows(self, given: dict[str, Tensor]) -> list[dict]:
        missing = [f.name for f in self.spec.features if f.required and f.name not in given]
        if missing:
            raise BadRequest(
                f"missing input {missing[0]!r} (a required feature); the inputs are {self.spec.names}"
            )
        present = [name for name in self.features if name in given]
        if not present:
            raise BadRequest(f"no feature input: send the features {self.spec.names} or {MATRIX_INPUT!r}")
        batch = _batch(given[present[0]])
        columns = []
        for name in present:
            if _batch(given[name]) != batch:
                raise BadRequest(
                    f"input {name!r} has a batch of {_batch(given[name])}, input {present[0]!r} of {batch}"
                )
            columns.append(decode(given[name]))
        return [dict(zip(present, values, strict=True)) for values in zip(*columns, strict=True)]

    def _matrix_rows(self, tensor: Tensor) -> list[dict]:
        width = len(self.features)
        if len(tensor.shape) != 2 or tensor.shape[1] != width or tensor.shape[0] == 0:
            raise BadRequest(
                f"input {MATRIX_INPUT!r} must have shape [batch, {width}] (batch >= 1), "
                f"got {list(tensor.shape)}"
            )
        values = decode(tensor)
        specs = self.spec.features
        rows = []
        for start in range(0, len(values), width):
            row = {}
            for column, (feature, value) in enumerate(zip(specs, values[start : start + width], strict=True)):
                if value is not None and feature.kind is FeatureKind.categorical:
                    value = _category(feature.categories, value, start // width, column, feature.name)
                row[feature.name] = value
            rows.append(row)
        return rows

    @staticmethod
    def _ids(tensor: Tensor | None, parameter: object, n: int) -> list[str] | None:
        if tensor is not None:
            if parameter is not None:
                raise BadRequest(f"{tensor.name!r} is given both as an input and as a parameter")
            if _batch(tensor) != n:
                raise BadRequest(f"input {tensor.name!r} has {_batch(tensor)} rows, the features {n}")
            values = decode(tensor)
            if None in values:
                raise BadRequest(f"input {tensor.name!r}: row {values.index(None)} is null")
            return values
        if parameter is None:
            return None
        if type(parameter) is str:
            return [parameter] * n
        if type(parameter) is list and len(parameter) == n and all(type(v) is str for v in parameter):
            return parameter
        raise BadRequest(f"parameter {ENTITY_INPUT!r} must be a string or a list of {n} strings, one per row")


def _batch(tensor: Tensor) -> int:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        if shape[0] == 0:
            raise BadRequest(f"input {tensor.name!r} has an empty batch (shape {list(shape)})")
        return shape[0]
    raise BadRequest(f"input {tensor.name!r} must have shape [batch] or [batch, 1], got {list(shape)}")


def _category(categories: list[str], code: float, row: int, column: int, name: str) -> str:
    if code.is_integer() and 0 <= code < len(categories):
        return categories[int(code)]
    raise BadRequest(
        f"input {MATRIX_INPUT!r} row {row}, column {column} ({name!r}): {code} is not a category code "
        f"(0 to {len(categories) - 1}, the metadata's categories)"
    )
