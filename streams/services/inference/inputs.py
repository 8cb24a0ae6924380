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

``Layout.rows`` checks a whole request (datatypes, layouts, batch sizes, every value) and
gives its ``Rows``, whose events are made a range of rows at a time: a request of 50,000
rows is scored in slices without holding 50,000 events at once.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from scoring.model.features import FeatureKind, FeatureSpec
from streams.services.inference.errors import BadRequest
from streams.services.inference.tensors import Elements, InferRequest, Tensor, decode

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
        rows = self.rows(request)
        return rows.events(0, rows.n, now_ms, request_id)

    def rows(self, request: InferRequest) -> Rows:
        """The request's rows, every input checked; ``BadRequest`` naming the first problem."""
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
            n, make = self._matrix_rows(given[MATRIX_INPUT])
        else:
            n, make = self._feature_rows(given)
        event_ids = self._ids(given.get(EVENT_INPUT), None, n)
        entity_ids = self._ids(given.get(ENTITY_INPUT), request.parameters.get(ENTITY_INPUT), n)
        return Rows(n, make, event_ids, entity_ids)

    def _what(self, name: str) -> str:
        feature = self.features.get(name)
        return f" (a {feature.kind.value} feature)" if feature is not None else ""

    def _feature_rows(self, given: dict[str, Tensor]) -> tuple[int, Callable[[int, int], list[dict]]]:
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
            columns.append(Elements(given[name]))

        def make(start: int, stop: int) -> list[dict]:
            values = [c.take(start, stop) for c in columns]
            return [dict(zip(present, row, strict=True)) for row in zip(*values, strict=True)]

        return batch, make

    def _matrix_rows(self, tensor: Tensor) -> tuple[int, Callable[[int, int], list[dict]]]:
        width = len(self.features)
        if len(tensor.shape) != 2 or tensor.shape[1] != width or tensor.shape[0] == 0:
            raise BadRequest(
                f"input {MATRIX_INPUT!r} must have shape [batch, {width}] (batch >= 1), "
                f"got {list(tensor.shape)}"
            )
        elements = Elements(tensor)
        specs = self.spec.features
        categorical = [j for j, f in enumerate(specs) if f.kind is FeatureKind.categorical]
        for j in categorical:  # every code checked before any row is scored
            for i, code in enumerate(_column(elements, j, width)):
                if code is not None:
                    _category(specs[j].categories, code, i, j, specs[j].name)

        def make(start: int, stop: int) -> list[dict]:
            values = elements.take(start * width, stop * width)
            rows = []
            for offset in range(0, len(values), width):
                row = dict(zip(self.spec.names, values[offset : offset + width], strict=True))
                for j in categorical:
                    code = values[offset + j]
                    if code is not None:
                        row[specs[j].name] = specs[j].categories[int(code)]
                rows.append(row)
            return rows

        return tensor.shape[0], make

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


def _column(elements: Elements, j: int, width: int, rows: int = 4096):
    """Column ``j`` of a matrix's elements, a slice of rows at a time."""
    for start in range(0, len(elements), rows * width):
        yield from elements.take(start, start + rows * width)[j::width]


class Rows:
    """A checked request's rows: ``n`` of them, made into encoded feature events a range at a time."""

    def __init__(
        self,
        n: int,
        make: Callable[[int, int], list[dict]],
        event_ids: list[str] | None,
        entity_ids: list[str] | None,
    ) -> None:
        self.n, self._make, self._event_ids, self._entity_ids = n, make, event_ids, entity_ids

    def events(self, start: int, stop: int, now_ms: int, request_id: str) -> list[bytes]:
        """Rows ``start`` to ``stop`` as the feature events a producer would write."""
        event_ids = (
            self._event_ids[start:stop]
            if self._event_ids
            else [f"{request_id}-{i}" for i in range(start, stop)]
        )
        entity_ids = self._entity_ids[start:stop] if self._entity_ids else event_ids
        dumps = orjson.dumps
        return [
            dumps({"event_id": e, "entity_id": k, "event_time": now_ms, "features": row})
            for e, k, row in zip(event_ids, entity_ids, self._make(start, stop), strict=True)
        ]


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
