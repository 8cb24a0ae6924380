"""Per-prediction explanations: LightGBM's feature contributions (TreeSHAP, ``pred_contrib``).

Contributions are in the model's raw score space (log-odds for binary): the bias
(the expected raw score) plus every feature's contribution is the raw score. An
attached explanation keeps the ``top_k`` largest by magnitude and sums the others
into ``rest``, so bias + top + rest is still the raw score.

A multiclass model has a raw score per class (softmax of them gives the probabilities, or
a sigmoid of each for ``multiclassova``), so an explanation is of one class, named in
``class_name``: the predicted class unless another is asked for.

A ``pred_contrib`` call costs tens of times a prediction, so the stream explains a
sampled share of events, chosen by a hash of ``event_id``: the same events are
explained again when a batch is replayed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from scoring.model.bundle import ModelBundle
from scoring.model.features import FeatureKind

_BUCKETS = 1_000_000


def sampled(event_ids: Sequence[str], share: float) -> list[int]:
    """Positions of the events whose explanation is attached: a stable ``share`` of event ids."""
    if share <= 0:
        return []
    if share >= 1:
        return list(range(len(event_ids)))
    cut = int(share * _BUCKETS)
    return [i for i, e in enumerate(event_ids) if zlib.crc32(e.encode()) % _BUCKETS < cut]


class Explainer:
    def __init__(self, bundle: ModelBundle, top_k: int = 5) -> None:
        self.bundle = bundle
        self.top_k = top_k
        self.names = bundle.spec.names
        self._decoders = [
            (lambda v, c=f.categories: None if v != v else (c[int(v)] if v < len(c) else "(unseen)"))
            if f.kind is FeatureKind.categorical
            else (lambda v: None if v != v else float(v))
            for f in bundle.spec.features
        ]

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """rows x (features + 1): each feature's contribution, then the bias; a multiclass model's
        rows x classes x (features + 1)."""
        contrib = np.asarray(self.bundle.booster.predict(matrix, pred_contrib=True, num_threads=1))
        classes = len(self.bundle.class_names)
        return contrib.reshape(len(matrix), classes, -1) if classes else contrib

    def explain(
        self, matrix: np.ndarray, top_k: int | None = None, classes: np.ndarray | None = None
    ) -> list[dict]:
        """One explanation per row: bias, raw score, the top contributions, the rest summed.

        Multiclass: of class ``classes[i]`` (an index) for row ``i``; by default the predicted class.
        """
        k = self.top_k if top_k is None else top_k
        contrib = self.contributions(matrix)
        names = self.bundle.classes
        if names:
            if classes is None:
                classes = self.bundle.predict(matrix).argmax(axis=1)
            contrib = contrib[np.arange(len(matrix)), np.asarray(classes, dtype=np.int64)]
        out = []
        for i, (row, values) in enumerate(zip(matrix, contrib, strict=True)):
            features, bias = values[:-1], float(values[-1])
            order = np.argsort(-np.abs(features), kind="stable")
            top, rest = order[:k], order[k:]
            explanation = {
                "bias": bias,
                "raw_score": float(bias + features.sum()),
                "top": [
                    {
                        "feature": self.names[j],
                        "value": self._decoders[j](row[j]),
                        "contribution": float(features[j]),
                    }
                    for j in top
                ],
                "rest": float(features[rest].sum()),
            }
            if names:
                explanation["class_name"] = names[int(classes[i])]  # type: ignore[index]
            out.append(explanation)
        return out
