"""The Open Inference Protocol (V2) over a worker's ``ScoreHandler``, free of HTTP.

A request is answered by the stream's own path: its rows become the feature events a
producer would write (``inference_inputs``), the handler's validator parses them, its
serving plan routes them (a split by entity hash, as on the stream; a shadow challenger
is not asked) and its scorers score them. So the score of an event equals the prediction
the stream gives it, with the same model version; the ``model_version`` output says, per
row, which version answered. A request naming a version is scored by that version alone.

A multiclass model answers ``score`` (the predicted class's probability), ``label`` (the
predicted class's name, BYTES) and ``probabilities`` (FP64, shape [rows, classes], row-major, in
the model's class order); its metadata lists the classes (``parameters.classes``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from schemas.keys import Task
from scoring.model.bundle import ModelBundle
from scoring.model.validation import ParsedEvent
from streams.services.inference.errors import BadRequest, ModelFailed, NotFound, NotReady, TooLarge
from streams.services.inference.inputs import MATRIX_INPUT, Layout
from streams.services.inference.tensors import InferRequest, read_request
from streams.services.score import Answered, RowRefused, ScoreHandler

SLICE_ROWS = 2_000


@dataclass(frozen=True)
class Inference:
    """An answered request: the protocol's response, its rows, and (when kept) what the stream would
    have scored, slice by slice."""

    response: dict
    rows: int
    received_ms: int
    slices: list[tuple[list[ParsedEvent], list[Answered]]]


class InferenceService:
    """Metadata, readiness and inference of the model this worker serves (champion and challenger)."""

    def __init__(self, handler: ScoreHandler, ready: Callable[[], bool], max_rows: int = 100_000) -> None:
        self.handler = handler
        self._ready = ready
        self.max_rows = max_rows
        self._layouts: dict[tuple[str, str], Layout] = {}

    def ready(self) -> bool:
        return self._ready()

    def bundle(self, name: str, version: str | None = None) -> ModelBundle:
        """The served bundle of that name (the champion unless ``version`` names the challenger)."""
        serving = self.handler.serving
        served = [b for b in (serving.champion, serving.challenger) if b is not None]
        if name != serving.champion.name:
            raise NotFound(f"model {name!r} is not served here; this worker serves {serving.champion.name!r}")
        if version is None:
            return serving.champion
        for bundle in served:
            if bundle.version == version:
                return bundle
        versions = [b.version for b in served]
        raise NotFound(
            f"model {name!r} has no version {version!r} serving here; versions serving: {versions}"
        )

    def layout(self, bundle: ModelBundle) -> Layout:
        key = (bundle.name, bundle.version)
        if key not in self._layouts:
            if len(self._layouts) > 8:  # old versions
                self._layouts.clear()
            self._layouts[key] = Layout(bundle.spec)
        return self._layouts[key]

    def metadata(self, name: str, version: str | None = None) -> dict:
        bundle = self.bundle(name, version)
        serving = self.handler.serving
        layout = self.layout(bundle)
        return {
            "name": bundle.name,
            "versions": [b.version for b in (serving.champion, serving.challenger) if b is not None],
            "platform": "lightgbm",
            "inputs": layout.metadata_inputs(),
            "outputs": [
                {"name": n, "datatype": d, "shape": _shape(n, -1, len(bundle.class_names))}
                for n, d in _outputs(bundle)
            ],
            "parameters": {
                "task": bundle.task.value,
                "serving_version": serving.champion.version,
                **({"classes": list(bundle.class_names)} if bundle.class_names else {}),
                **layout.metadata_parameters(),
            },
        }

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.bundle(name, version)
        return self._ready()

    def admit(self, name: str, version: str | None = None) -> ModelBundle:
        """The bundle a request to ``name`` (``version``) goes to, if this worker takes requests now."""
        bundle = self.bundle(name, version)
        if not self._ready():
            raise NotReady("the worker is not ready (its /ready says why): try another worker or later")
        return bundle

    def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None = None,
        keep: bool = False,
    ) -> Inference:
        """The answer to one request; ``keep``: with each slice's events and answers (to write them)."""
        bundle = self.admit(name, version)
        received_ms = int(time.time() * 1000)
        request = read_request(body, header_length)
        outputs = _outputs(bundle)
        names = [n for n, _ in outputs]
        unknown = [o for o in request.outputs or () if o not in names]
        if unknown:
            raise BadRequest(f"unknown output {unknown[0]!r}: the outputs are {names}")
        rows = self.layout(bundle).rows(request)
        if rows.n > self.max_rows:
            raise TooLarge(f"{rows.n} rows in one request, over STREAMSCORE_INFER_MAX_ROWS ({self.max_rows})")
        request_id = request.id or uuid.uuid4().hex[:16]
        answer = _Answer(rows.n, len(bundle.class_names))
        slices = []
        for start in range(0, rows.n, SLICE_ROWS):
            values = rows.events(start, min(rows.n, start + SLICE_ROWS), received_ms, request_id)
            try:
                events, answered = self.handler.score_events(values, version)
            except RowRefused as exc:
                where = f"input {MATRIX_INPUT!r} row" if _matrix(request) else "row"
                raise BadRequest(f"{where} {start + exc.row}: {exc.reason}") from None
            except KeyError:
                raise NotFound(
                    f"model {name!r} version {version!r} stopped serving during the request"
                ) from None
            answer.add(start, answered)
            if keep:
                slices.append((events, answered))
        return Inference(answer.response(bundle.name, request, outputs), rows.n, received_ms, slices)


class _Answer:
    """The outputs of a request's rows, filled in slice by slice; ``classes``: a multiclass model's
    class count (0 for a model of one score), the width of its probabilities."""

    def __init__(self, n: int, classes: int = 0) -> None:
        self.scores = np.zeros(n)
        self.labels: list[bool | str | None] = [None] * n
        self.probabilities = np.zeros((n, classes))
        self.versions: list[str] = [""] * n
        self.first_version: str | None = None

    def add(self, start: int, answered: list[Answered]) -> None:
        for part in answered:
            result = part.result
            if result.failed:
                row, reason = next(iter(result.failed.items()))
                raise ModelFailed(f"row {start + int(part.rows[row])}: {reason}")
            rows = part.rows + start
            self.scores[rows] = result.scores
            version = part.model.bundle.version
            self.first_version = self.first_version or version
            if result.labels is not None:
                text = result.probabilities is not None  # a multiclass model's label: its class name (BYTES)
                for row, label in zip(rows.tolist(), result.labels.tolist(), strict=True):
                    self.labels[row] = str(label) if text else label
            if result.probabilities is not None:
                self.probabilities[rows] = result.probabilities
            for row in rows.tolist():
                self.versions[row] = version

    def response(self, name: str, request: InferRequest, outputs: list[tuple[str, str]]) -> dict:
        n, width = self.probabilities.shape
        data = {
            "score": self.scores.tolist(),
            "label": self.labels,
            PROBABILITIES: self.probabilities.ravel().tolist(),  # row-major, [rows, classes]
            "model_version": self.versions,
        }
        wanted = request.outputs or [n for n, _ in outputs]
        body: dict = {
            "model_name": name,
            # one version answered every row, or (a split) the champion's; each row's is in model_version
            "model_version": self.first_version,
            "outputs": [
                {"name": o, "datatype": d, "shape": _shape(o, n, width), "data": data[o]}
                for o, d in outputs
                if o in wanted
            ],
        }
        if request.id is not None:
            body["id"] = request.id
        return body


PROBABILITIES = "probabilities"


def _outputs(bundle: ModelBundle) -> list[tuple[str, str]]:
    if bundle.task is Task.multiclass:
        return [("score", "FP64"), ("label", "BYTES"), (PROBABILITIES, "FP64"), ("model_version", "BYTES")]
    label = [("label", "BOOL")] if bundle.task is Task.binary else []
    return [("score", "FP64"), *label, ("model_version", "BYTES")]


def _shape(output: str, rows: int, classes: int) -> list[int]:
    return [rows, classes] if output == PROBABILITIES else [rows]


def _matrix(request: InferRequest) -> bool:
    return any(t.name == MATRIX_INPUT for t in request.inputs)
