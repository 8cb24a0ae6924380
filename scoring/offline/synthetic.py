"""Synthetic data for the demo, tests and benchmarks, made in the run (nothing downloaded).

Both loan generators start from river's Agrawal stream: loan applications with numeric
columns and three categorical ones (education level, car make, zip code), turned into
strings so they train as categoricals. ``agrawal_frame`` is Agrawal as it is: its labels
follow a rule of the inputs exactly, which a model learns perfectly (AUC 1.0), right for
tests that need exact behaviour. ``loan_frame`` is the demo's and the shipped sample's
data, made to behave like real data (see there). ``multiclass_frame`` routes support tickets to
one of K queues by a rule with noise, for multiclass models.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import numpy as np
import orjson
import pandas as pd
from river.datasets import synth

AGRAWAL_CATEGORICAL = {"elevel": "edu", "car": "car", "zipcode": "zip"}
TARGET = "approved"


def agrawal_stream(
    n: int, seed: int, classification_function: int, perturbation: float = 0.0
) -> Iterator[tuple[dict, int]]:
    """The first ``n`` (x, y) of ``river.datasets.synth.Agrawal`` with these arguments, the same values.

    The same draws in the same order as river's (unbalanced) stream, without its ``eval`` of
    each feature's name for every row, which made river's stream four fifths of a frame's time.
    """
    rng = random.Random(seed)
    classify = synth.Agrawal(classification_function=classification_function)._classification_functions[
        classification_function
    ]

    def perturb(value: float, low: float, high: float, span: float | None = None) -> float:
        value += (high - low if span is None else span) * (2 * (rng.random() - 0.5)) * perturbation
        return low if value < low else high if value > high else value

    for _ in range(n):
        salary = 20000 + 130000 * rng.random()
        commission = 0 if (salary >= 75000) else (10000 + 75000 * rng.random())
        age = rng.randint(20, 80)
        elevel = rng.randint(0, 4)
        car = rng.randint(1, 20)
        zipcode = rng.randint(0, 8)
        hvalue = (8 - zipcode) * 100000 * (0.5 + rng.random())
        hyears = rng.randint(1, 30)
        loan = rng.random() * 500000
        y = classify(salary, commission, age, elevel, car, zipcode, hvalue, hyears, loan)
        if perturbation > 0.0:
            salary = perturb(salary, 20000, 150000)
            if commission > 0:
                commission = perturb(commission, 10000, 75000)
            age = round(perturb(age, 20, 80))
            hvalue = perturb(hvalue, (9 - zipcode) * 100000, 0, 135000)
            hyears = round(perturb(hyears, 1, 30))
            loan = perturb(loan, 0, 500000)
        x = {"salary": salary, "commission": commission, "age": age, "elevel": elevel, "car": car}
        x |= {"zipcode": zipcode, "hvalue": hvalue, "hyears": hyears, "loan": loan}
        yield x, y


def agrawal_frame(n: int, seed: int = 7, classification_function: int = 0) -> pd.DataFrame:
    """``n`` rows of river's Agrawal stream with the label in column ``approved``."""
    rows = []
    for x, y in agrawal_stream(n, seed, classification_function):
        row = {
            k: (f"{AGRAWAL_CATEGORICAL[k]}{v}" if k in AGRAWAL_CATEGORICAL else float(v))
            for k, v in x.items()
        }
        row[TARGET] = int(y)
        rows.append(row)
    return pd.DataFrame(rows)


def loan_frame(n: int, seed: int = 7, noise: float = 0.1, label_noise: float = 0.05) -> pd.DataFrame:
    """``n`` loan applications that behave like real data, label in ``approved``.

    Approval follows Agrawal's rule 1 (a salary band that depends on age), but the inputs
    are measured with error (river's ``perturbation``: each numeric input moves by up to
    ``noise`` of its range after the label is set), a co-applicant (a boolean column)
    gets a declined application approved three times in ten, and ``label_noise`` of the
    labels are flipped. The classes overlap: a LightGBM model reaches a holdout AUC near
    0.89 and accuracy near 0.81, not 1.0. Amounts and ages are whole numbers, as a bank records them.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for x, y in agrawal_stream(n, seed, 1, noise):
        row = {
            k: (f"{AGRAWAL_CATEGORICAL[k]}{v}" if k in AGRAWAL_CATEGORICAL else round(v))
            for k, v in x.items()
        }
        coapplicant = bool(rng.random() < 0.3)
        if coapplicant and y == 0 and rng.random() < 0.3:
            y = 1
        row["coapplicant"] = coapplicant
        row[TARGET] = int(y) ^ int(rng.random() < label_noise)
        rows.append(row)
    return pd.DataFrame(rows)


def numeric_frame(n: int, n_features: int = 20, seed: int = 0) -> pd.DataFrame:
    """Standard-normal features ``f00``.. and a nonlinear binary target ``y``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_features))
    logit = x[:, 0] - 0.8 * x[:, 1] ** 2 + x[:, 2] * x[:, 3] + 0.5 * rng.standard_normal(n)
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(n_features)])
    frame["y"] = (logit > 0).astype(int)
    return frame


def logistic_frame(n: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    """Six standard-normal features ``x0``.. and ``y`` ~ Bernoulli(sigmoid(2 x0 - x1 + x2 / 2)).

    P(y | x) is fixed, so a model's calibrated probabilities keep holding under covariate
    shift: ``scale`` < 1 squeezes x0 towards the decision boundary, which lowers accuracy
    and AUC (the case performance estimation is for).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    x[:, 0] *= scale
    logit = 2.0 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def noisy_regression_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Five standard-normal features ``x0``.. and ``y`` = 2 x0 + sin(2 x1) + x2 / 2 + noise growing with |x0|.

    P(y | x) is fixed; ``shift`` moves x0 to where the noise, and so any model's error, is larger.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    x[:, 0] += shift
    noise = (0.3 + 0.7 * np.abs(x[:, 0])) * rng.standard_normal(n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    frame["y"] = 2 * x[:, 0] + np.sin(2 * x[:, 1]) + 0.5 * x[:, 2] + noise
    return frame


QUEUES = (
    "billing", "fraud", "support", "sales", "returns", "shipping", "accounts", "technical", "claims", "other",
)  # fmt: skip
MULTICLASS_TARGET = "queue"
CHANNELS = ("email", "phone", "chat", "web")


def queue_names(n_classes: int) -> list[str]:
    """The class names of ``multiclass_frame``: queue names, then ``queue10``, ``queue11``..."""
    return [QUEUES[k] if k < len(QUEUES) else f"queue{k}" for k in range(n_classes)]


def multiclass_frame(
    n: int,
    n_classes: int = 3,
    seed: int = 7,
    label_noise: float = 0.05,
    temperature: float = 1.0,
    fixed: dict[str, float] | None = None,
) -> pd.DataFrame:
    """``n`` support tickets, each routed to one of ``n_classes`` queues (``queue_names``), in ``queue``.

    Inputs: ``amount`` (money in dispute), ``account_days``, ``messages``, ``hour``, ``channel`` (a
    string of ``CHANNELS``), ``vip`` (a boolean) and ``x0``, ``x1`` (two more signals). Each queue
    has a score that is a fixed linear rule of the inputs (the same rule for every ``seed``: only
    the tickets change); a ticket goes to the queue whose score plus Gumbel noise is highest (a draw
    from the softmax of the scores over ``temperature``), and ``label_noise`` of the tickets go to a
    queue at random. The classes overlap: LightGBM reaches a holdout accuracy near 0.8 with 3
    queues, lower with more, never 1.0. ``fixed`` holds numeric inputs at one value, e.g.
    ``{"messages": 3}``: a covariate shift (the tickets change, the rule routing them does not).
    """
    if n_classes < 2:
        raise ValueError("a multiclass stream needs at least 2 classes")
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(4.0, 1.0, n), 2)
    account_days = rng.integers(0, 3650, n)
    messages = rng.poisson(3.0, n)
    hour = rng.integers(0, 24, n)
    channel = rng.choice(len(CHANNELS), n, p=[0.4, 0.25, 0.25, 0.1])
    vip = rng.random(n) < 0.15
    x = rng.standard_normal((n, 2))
    held = dict(fixed or {})
    unknown = set(held) - {"amount", "account_days", "messages", "hour", "x0", "x1"}
    if unknown:
        raise ValueError(f"fixed: {sorted(unknown)} are not numeric inputs of the tickets")
    amount = np.full(n, held["amount"]) if "amount" in held else amount
    account_days = np.full(n, held["account_days"]) if "account_days" in held else account_days
    messages = np.full(n, held["messages"]) if "messages" in held else messages
    hour = np.full(n, held["hour"]) if "hour" in held else hour
    for j, name in enumerate(("x0", "x1")):
        if name in held:
            x[:, j] = held[name]
    signals = np.column_stack(
        [
            (np.log(amount) - 4.0),
            account_days / 1825.0 - 1.0,
            (messages - 3.0) / 1.7,
            np.cos(2 * np.pi * hour / 24),
            np.eye(len(CHANNELS))[channel],
            vip * 1.0,
            x,
        ]
    )
    rule = np.random.default_rng(1000 + n_classes)  # the concept: fixed per class count
    weights = rule.normal(0.0, 1.6, (n_classes, signals.shape[1]))
    logits = signals @ weights.T / temperature
    routed = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    noisy = rng.random(n) < label_noise
    routed[noisy] = rng.integers(0, n_classes, int(noisy.sum()))
    names = np.asarray(queue_names(n_classes), dtype=object)
    return pd.DataFrame(
        {
            "amount": amount,
            "account_days": account_days,
            "messages": messages,
            "hour": hour,
            "channel": np.asarray(CHANNELS, dtype=object)[channel],
            "vip": vip,
            "x0": x[:, 0],
            "x1": x[:, 1],
            MULTICLASS_TARGET: names[routed],
        }
    )


EVENT_TIME_0 = 1_700_000_000_000  # event_time (epoch ms) of the first synthetic event


def events_from_frame(
    frame: pd.DataFrame, prefix: str = "evt", n_entities: int = 1000, start_ms: int | None = None
) -> Iterator[dict]:
    """Feature events, one per row, with deterministic ids; NaN cells become null."""
    base = start_ms if start_ms is not None else EVENT_TIME_0
    columns = list(frame.columns)
    for i, values in enumerate(frame.itertuples(index=False, name=None)):
        features = {
            c: (None if isinstance(v, float) and v != v else v) for c, v in zip(columns, values, strict=True)
        }
        yield {
            "event_id": f"{prefix}-{i}",
            "entity_id": f"cust-{i % n_entities}",
            "event_time": base + i,
            "features": features,
        }


def event_payloads_of(frame: pd.DataFrame, prefix: str = "evt") -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` Kafka payloads of ``events_from_frame``: entity id and JSON."""
    for event in events_from_frame(frame, prefix=prefix):
        yield event["entity_id"].encode(), orjson.dumps(event)


INVALID_KINDS = (
    "malformed_json",
    "not_an_object",
    "missing_event_id",
    "missing_feature",
    "wrong_type",
    "nan",
    "infinity",
    "bad_utf8",
    "bad_event_time",
    "null_value",
)


def invalid_payload(kind: str, event: dict, feature: str) -> bytes | None:
    """One invalid message of the given kind, built from a valid ``event``."""
    bad = {**event, "features": dict(event["features"])}
    if kind == "malformed_json":
        return orjson.dumps(bad)[:-7]
    if kind == "not_an_object":
        return orjson.dumps([bad["event_id"], 1, 2])
    if kind == "missing_event_id":
        del bad["event_id"]
    elif kind == "missing_feature":
        del bad["features"][feature]
    elif kind == "wrong_type":
        bad["features"][feature] = "not-a-number"
    elif kind == "nan":
        return _with_literal(bad, feature, b"NaN")
    elif kind == "infinity":
        return _with_literal(bad, feature, b"Infinity")
    elif kind == "bad_utf8":
        return orjson.dumps(bad).replace(b'"features"', b'"feat\xff\xfeures"', 1)
    elif kind == "bad_event_time":
        bad["event_time"] = "yesterday at noon"
    elif kind == "null_value":
        return None
    else:
        raise ValueError(f"unknown invalid kind {kind!r}")
    return orjson.dumps(bad)


def _with_literal(event: dict, feature: str, literal: bytes) -> bytes:
    marked = {**event, "features": {**event["features"], feature: "__LITERAL__"}}
    return orjson.dumps(marked).replace(b'"__LITERAL__"', literal)


def interleave_invalid(
    events: list[dict], n_invalid: int, feature: str, seed: int = 0
) -> list[tuple[str, dict, bytes | None]]:
    """Valid events with ``n_invalid`` invalid ones of every kind mixed in at random positions.

    Returns ``(kind, event, payload)``; ``kind`` is ``"valid"`` for good events.
    """
    rng = np.random.default_rng(seed)
    out: list[tuple[str, dict, bytes | None]] = [("valid", e, orjson.dumps(e)) for e in events]
    kinds = itertools.cycle(INVALID_KINDS)
    for i in range(n_invalid):
        kind = next(kinds)
        template = {**events[i % len(events)], "event_id": f"bad-{kind}-{i}"}
        out.insert(
            int(rng.integers(0, len(out) + 1)), (kind, template, invalid_payload(kind, template, feature))
        )
    return out
