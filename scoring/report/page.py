"""A model report: one self-contained HTML file, charts embedded as PNG, readable offline.

(A multiclass model's report is ``scoring.report.classes.MulticlassReport``, built on this one.)

Built from labelled rows (the holdout at training time, or labelled events read back
from the topics): KPIs; feature importance by gain and by mean |SHAP|; calibration
(binary) or predicted against actual (regression); the score distribution against
the training reference; KPIs per segment with the gap to overall; fairness across a
declared sensitive feature; what-if curves for the most important features; and, from
the topics, each drift window's KPIs estimated before labels against those realized.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG in memory
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from schemas.estimation import EstimateCheck
from scoring.drift.stats import psi
from scoring.metrics.holdout import binary_metrics, regression_metrics
from scoring.model.bundle import ModelBundle, Task
from scoring.model.explain import Explainer
from scoring.model.features import FeatureKind
from scoring.model.reference import bin_counts

SECTIONS = ("kpis", "importance", "calibration", "scores", "segments", "fairness", "what-if", "estimates")
WHAT_IF_ROWS = 50
WHAT_IF_FEATURES = 3


@dataclass(frozen=True)
class ReportInput:
    """Raw feature columns (as events carry them), the labels, and what to break them down by."""

    frame: pd.DataFrame
    y: np.ndarray
    source: str
    segments: tuple[str, ...] = ()
    sensitive: str | None = None
    gap_threshold: float = 0.1
    estimate_checks: tuple[EstimateCheck, ...] = ()  # drift windows checked by the learn path


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list], flagged: list[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = ' class="flag"' if flagged and flagged[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class ModelReport:
    segment_key = "accuracy"  # the KPI of a classifier's segments; a regression model's is "mae"
    extra_sections: dict[str, str] = {}  # section id -> title, after the KPIs (a subclass's own)

    def __init__(self, bundle: ModelBundle, data: ReportInput) -> None:
        self.bundle = bundle
        self.data = data
        self.binary = bundle.task is Task.binary
        self.classifies = bundle.task.classifies
        self.matrix = bundle.spec.encode_frame(data.frame)
        self.scores = bundle.predict(self.matrix)
        self.threshold = bundle.metadata.threshold

    @property
    def served_scores(self) -> np.ndarray:
        """One score per row: the score, or a multiclass model's predicted class's probability."""
        return self.scores

    def metrics(self, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        if self.binary:
            return binary_metrics(y, scores, self.threshold)
        return regression_metrics(y, scores)

    # -- sections

    def kpis(self) -> str:
        now = self.metrics(self.data.y, self.scores)
        names = sorted(now)
        rows = [[n, now[n], self.bundle.metrics.get(n)] for n in names]
        return _table(
            ["metric", f"on {self.data.source} ({len(self.data.y):,} rows)", "holdout at training"], rows
        )

    def importance(self) -> str:
        names = self.bundle.spec.names
        gain = np.asarray(self.bundle.booster.feature_importance(importance_type="gain"), dtype=float)
        sample = self.matrix[: min(len(self.matrix), 2000)]
        shap = np.abs(Explainer(self.bundle).contributions(sample)[:, :-1]).mean(axis=0)
        order = np.argsort(shap)
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(names) + 1.5))
        axes[0].barh([names[i] for i in order], gain[order] / max(gain.sum(), 1e-12), color="#4c72b0")
        axes[0].set_title("gain (share of total)")
        axes[1].barh([names[i] for i in order], shap[order], color="#dd8452")
        axes[1].set_title("mean |SHAP| (raw score units)")
        rows = [[names[i], float(gain[i] / max(gain.sum(), 1e-12)), float(shap[i])] for i in order[::-1]]
        return _png(fig) + _table(["feature", "gain share", "mean |SHAP|"], rows)

    def calibration(self) -> str:
        y, p = self.data.y, self.scores
        fig, ax = plt.subplots(figsize=(5.5, 5))
        if self.binary:
            edges = np.linspace(0, 1, 11)
            which = np.clip(np.digitize(p, edges) - 1, 0, 9)
            rows = []
            for b in range(10):
                mask = which == b
                if mask.any():
                    rows.append([f"{edges[b]:.1f}-{edges[b + 1]:.1f}", int(mask.sum()), float(p[mask].mean()),
                                 float(y[mask].mean())])  # fmt: skip
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
            ax.plot([r[2] for r in rows], [r[3] for r in rows], "o-", label="model")
            ax.set_xlabel("mean predicted probability")
            ax.set_ylabel("observed rate")
            ax.legend()
            return _png(fig) + _table(["score bin", "rows", "mean score", "observed rate"], rows)
        ax.scatter(y, p, s=4, alpha=0.4)
        low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([low, high], [low, high], "k--", lw=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        return _png(fig)

    def score_distribution(self) -> str:
        ref = self.bundle.reference.score
        if ref is None:
            return "<p>No reference score distribution in this bundle.</p>"
        edges = np.asarray(ref.edges)
        now = bin_counts(self.served_scores, edges)
        ref_share = np.asarray(ref.counts) / max(sum(ref.counts), 1)
        now_share = now / max(now.sum(), 1)
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x = np.arange(len(ref_share))
        ax.bar(x - 0.2, ref_share, 0.4, label="training holdout")
        ax.bar(x + 0.2, now_share, 0.4, label=self.data.source)
        ax.set_xlabel("score decile of the training holdout")
        ax.set_ylabel("share")
        ax.legend()
        return _png(fig) + f"<p>PSI against the training holdout: {psi(ref.counts, now):.4f}</p>"

    def _group_rows(self, feature: str) -> tuple[list[list], list[bool]]:
        overall = self.metrics(self.data.y, self.scores)
        key = self.segment_key if self.classifies else "mae"
        values = self.data.frame[feature].astype(str).fillna("(missing)")
        if self.bundle.spec.features[self.bundle.spec.names.index(feature)].kind is FeatureKind.numeric:
            values = pd.qcut(self.data.frame[feature], 4, duplicates="drop").astype(str)
        rows, flags = [], []
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            m = self.metrics(self.data.y[mask], self.scores[mask])
            gap = m[key] - overall[key]
            limit = self.data.gap_threshold * (1 if self.classifies else abs(overall[key]))
            rows.append([feature, value, int(mask.sum()), m[key], gap])
            flags.append(abs(gap) > limit)
        return rows, flags

    def segments(self) -> str:
        if not self.data.segments:
            return "<p>No segment features declared (<code>--segment</code>).</p>"
        rows, flags = [], []
        for feature in self.data.segments:
            r, f = self._group_rows(feature)
            rows += r
            flags += f
        key = self.segment_key if self.classifies else "MAE"
        note = f"<p>Flagged (highlighted): gap beyond {self.data.gap_threshold} in {key}.</p>"
        return note + _table(["feature", "segment", "rows", key, "gap to overall"], rows, flags)

    def fairness(self) -> str:
        feature = self.data.sensitive
        if feature is None:
            return "<p>No sensitive feature declared (<code>--sensitive</code>).</p>"
        if not self.binary:
            return "<p>Fairness metrics here are for binary classifiers.</p>"
        groups = self.data.frame[feature].astype(str).fillna("(missing)").to_numpy()
        predicted = self.scores >= self.threshold
        rows = []
        for g in sorted(set(groups)):
            mask = groups == g
            positives = mask & (self.data.y == 1)
            tpr = float(predicted[positives].mean()) if positives.any() else float("nan")
            rows.append([g, int(mask.sum()), float(predicted[mask].mean()), tpr])
        rates = [r[2] for r in rows]
        tprs = [r[3] for r in rows if math.isfinite(r[3])]
        dp = max(rates) - min(rates)
        eo = max(tprs) - min(tprs) if tprs else float("nan")
        summary = _table(
            ["metric", "value"],
            [["demographic parity difference", dp], ["equal opportunity difference", eo]],
        )
        return summary + _table([feature, "rows", "positive rate", "true positive rate"], rows)

    def what_if(self) -> str:
        spec = self.bundle.spec
        sample = self.matrix[: min(WHAT_IF_ROWS, len(self.matrix))]
        shap = np.abs(Explainer(self.bundle).contributions(self.matrix[:2000])[:, :-1]).mean(axis=0)
        top = np.argsort(-shap)[:WHAT_IF_FEATURES]
        fig, axes = plt.subplots(1, len(top), figsize=(5 * len(top), 3.5), squeeze=False)
        for ax, j in zip(axes[0], top, strict=True):
            feature = spec.features[j]
            if feature.kind is FeatureKind.numeric:
                column = sample[:, j]
                low = feature.min if feature.min is not None else float(np.nanmin(column))
                high = feature.max if feature.max is not None else float(np.nanmax(column))
                grid = np.linspace(low, high, 25)
                labels = None
            else:
                grid = np.arange(len(feature.categories), dtype=float)
                labels = feature.categories
            curves = []
            for value in grid:
                varied = sample.copy()
                varied[:, j] = value
                curves.append(self.bundle.predict(varied))
            curves = np.asarray(curves)  # grid x rows
            ax.plot(grid, curves, color="#999999", lw=0.5, alpha=0.5)
            ax.plot(grid, curves.mean(axis=1), color="#c44e52", lw=2.5, label="mean")
            if labels is not None:
                ax.set_xticks(grid, labels, rotation=45, ha="right")
            ax.set_title(feature.name)
            ax.set_ylabel("score")
        return (
            _png(fig) + f"<p>Each grey line is one of {len(sample)} rows with only this feature varied;"
            " red is their mean.</p>"
        )

    def estimates(self) -> str:
        checks = sorted(self.data.estimate_checks, key=lambda c: (c.window is None, c.window or 0))
        if not checks:
            return (
                "<p>No drift window of this version has been checked yet: estimates come from a worker's "
                "drift role, their checks from its learn role once labels arrive "
                "(<code>streamscore report --from-topics</code>).</p>"
            )
        rows, flags = [], []
        for c in checks:
            for m in c.checks:
                band = f"{m.lower:.4f} - {m.upper:.4f}"
                rows.append([c.window, c.labelled, m.metric, m.estimate, band, m.realized, m.difference,
                             "disagree" if m.disagree else "agree"])  # fmt: skip
                flags.append(m.disagree)
        off = [c for c in checks if c.disagree]
        summary = (
            f"<p>{len(checks)} windows checked; in {len(off)} estimate and labels disagree: a realized KPI "
            "outside the estimate's band and past the estimator's accuracy (highlighted). The estimate "
            "assumes the model's probabilities still hold: where labels disagree with it, suspect concept "
            "drift (docs/estimation.md).</p>"
        )
        notes = "".join(f"<li>{html.escape(c.message)}</li>" for c in off[:10])
        header = [
            "window",
            "labelled",
            "KPI",
            "estimated",
            "band",
            "realized",
            "realized - estimated",
            "check",
        ]
        return summary + (f"<ul>{notes}</ul>" if notes else "") + _table(header, rows, flags)

    # -- the page

    def section(self, sid: str) -> str:
        """A section of a subclass's own (``extra_sections``)."""
        raise NotImplementedError(sid)

    def html(self) -> str:
        b = self.bundle
        parts = {
            "kpis": ("KPIs", self.kpis),
            **{sid: (title, lambda s=sid: self.section(s)) for sid, title in self.extra_sections.items()},
            "importance": ("Feature importance", self.importance),
            "calibration": (
                "Calibration" if self.classifies else "Predicted against actual",
                self.calibration,
            ),
            "scores": ("Score distribution against the reference", self.score_distribution),
            "segments": ("Subpopulations", self.segments),
            "fairness": ("Fairness", self.fairness),
            "what-if": ("What-if curves", self.what_if),
            "estimates": ("Estimated before labels against realized, per drift window", self.estimates),
        }
        body = "".join(
            f'<section id="{sid}"><h2>{html.escape(title)}</h2>{build()}</section>'
            for sid, (title, build) in parts.items()
        )
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(b.name)} {html.escape(b.version)}: model report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0; }} .meta {{ color: #666; margin-top: .3rem; }}
section {{ border-top: 1px solid #ddd; margin-top: 1.5rem; }}
table {{ border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }}
td, th {{ border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }}
th {{ background: #f4f4f4; }} td:first-child {{ text-align: left; }}
tr.flag td {{ background: #fde2e1; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(b.name)} <small>version {html.escape(b.version)}</small></h1>
<p class="meta">{b.task.value} model, LightGBM {html.escape(b.metadata.lightgbm_version)};
data: {html.escape(self.data.source)}, {len(self.data.y):,} labelled rows; report made {created}</p>
{body}
</body></html>
"""
