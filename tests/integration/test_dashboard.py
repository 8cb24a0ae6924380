"""The live dashboard in headless Chromium (Debian's, driven by Playwright) while a real worker scores."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from scoring.model.bundle import ModelBundle
from streams.kafka.producer import produce_payloads
from streams.settings import Settings
from tests.conditions import budget
from tests.integration.kafka_tools import WorkerProcess, loan_stream

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, from `make browser`; Playwright downloads nothing
OUTPUT = Path(__file__).resolve().parents[1] / "output"  # kept with the test output, not committed
BASELINE_Y = 170 - 22  # the chart's height less its bottom margin: where 0 is drawn


def _dom(page: Page) -> dict:
    return page.evaluate(
        """() => {
        const d = (name) => document.querySelector(`path[data-series="${name}"]`)?.getAttribute("d") || "";
        return {
          polls: Number(document.body.dataset.polls || 0),
          predictions: Number(document.getElementById("predictions-total").dataset.value),
          events: Number(document.getElementById("events-total").dataset.value),
          dead: Number(document.getElementById("dead-letters-total").dataset.value),
          version: document.getElementById("model-version").textContent,
          versions: [...document.querySelectorAll("#versions li")].map((li) => li.dataset.version),
          throughput: d("predictions_per_s"),
          events_path: d("events_per_s"),
          p99: d("p99"),
          lag: d("lag"),
          lag_chart: !!document.querySelector("#chart-lag line"),
          lag_rows: [...document.querySelectorAll("#lag-table tr")].slice(1).map(
            (tr) => tr.cells[0].textContent),
          drift_bars: [...document.querySelectorAll("#chart-drift rect")].map(
            (r) => [r.dataset.feature, Number(r.dataset.psi), r.classList.contains("drifted")]),
          kpi_rows: [...document.querySelectorAll("#kpis tr[data-model]")].map((tr) => tr.dataset.model),
          kpi_text: document.getElementById("kpis").textContent,
          alerts: [...document.querySelectorAll("#alerts li")].map((li) => [li.className, li.textContent]),
          estimate_rows: [...document.querySelectorAll("#estimate-table tr[data-window]")].map((tr) => [
            tr.dataset.model, Number(tr.dataset.window), Number(tr.dataset.estimate), tr.dataset.realized]),
          estimated: d("estimated"),
          realized: d("realized"),
        };
    }"""
    )


def _peak(path: str) -> float:
    """Height above zero, in chart pixels, of the highest point of an SVG line path."""
    ys = [float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+)", path)]
    return BASELINE_Y - min(ys) if ys else 0.0


def _wait(page: Page, condition, timeout_s: float, what: str, worker: WorkerProcess) -> dict:
    """The page's figures once ``condition`` holds for them; fails with the last figures seen."""
    return worker.wait(lambda: _dom(page), condition, f"the dashboard to show {what}", timeout_s, 0.25)


def test_dashboard_charts_follow_a_live_stream_in_chromium(
    bootstrap, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir, tmp_path, workers
):
    assert CHROMIUM.exists(), "Debian's chromium is needed: `make browser` (part of `make test`) installs it"
    env = {
        **topic_env,
        "STREAMSCORE_LAG_INTERVAL_S": "1",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": "2000",
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_METRICS_EVERY_LABELS": "1000",
    }
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    n, invalid = 12_000, 120
    payloads, labels = loan_stream(n, invalid, prefix="dash")
    settings = Settings(kafka_bootstrap=bootstrap)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{worker.port}/dashboard")
            before = _wait(page, lambda d: d["polls"] >= 2, budget(), "two polls", worker)
            assert before["predictions"] == 0 and "no labels yet" in before["kpi_text"]
            assert before["version"] == agrawal_bundle.version
            assert before["versions"] == [agrawal_bundle.version]
            assert before["lag_chart"], "the lag chart is drawn"

            stream = threading.Thread(
                target=produce_payloads,
                args=(settings, payloads, 1500.0, topic_env["STREAMSCORE_TOPIC_FEATURES"]),
            )
            stream.start()
            first = _wait(page, lambda d: d["predictions"] >= 2000, budget(2000), "2,000 predictions", worker)
            second = _wait(
                page,
                lambda d: d["predictions"] >= first["predictions"] + 3000,
                budget(3000),
                "3,000 more",
                worker,
            )
            stream.join(budget(n))
            produce_payloads(settings, labels, topic=topic_env["STREAMSCORE_TOPIC_LABELS"])
            done = _wait(
                page,
                lambda d: (
                    d["predictions"] == n
                    and any(kind == "drift" for kind, _ in d["alerts"])
                    and len(d["kpi_rows"]) >= 2
                    and topic_env["STREAMSCORE_GROUP_ID"] in d["lag_rows"]
                    and any(realized != "" for *_, realized in d["estimate_rows"])
                ),
                budget(2 * n),
                "every prediction, a drift alert, KPIs of champion and challenger, the lag, realized KPIs",
                worker,
            )
            OUTPUT.mkdir(exist_ok=True)
            shot = OUTPUT / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    data = worker.get("/dashboard/data")
    series = data["series"]
    peak_rate = max(series["predictions_per_s"])
    # the rate drawn, over each sample's interval, adds up to the predictions counted: none left out
    rates, at = series["predictions_per_s"][1:], series["at"]
    charted = sum(r * (b - a) for r, a, b in zip(rates, at[:-1], at[1:], strict=True))
    counted = series["scored"][-1] - series["scored"][0]
    # the lag keeps being sampled from the consumers' statistics (every 2 s), not once
    sampled_at = data["lag_sampled_at"]
    resampled = worker.wait(lambda: worker.get("/dashboard/data")["lag_sampled_at"], lambda t: t > sampled_at,
                            "a newer lag sample", budget())  # fmt: skip
    peak_lag = max(v for v in data["series"]["lag"] if v is not None)
    psi = {feature: round(value, 3) for feature, value, _ in done["drift_bars"]}
    p99s = [v for v in data["series"]["p99"] if v is not None]
    print(
        f"predictions shown: {before['predictions']} -> {first['predictions']:,} -> "
        f"{second['predictions']:,} -> {done['predictions']:,}; dead letters {done['dead']}; "
        f"throughput path {len(first['throughput'])} -> {len(second['throughput'])} chars, "
        f"peak {_peak(first['throughput']):.0f} -> {_peak(done['throughput']):.0f} px; "
        f"peak predictions/s {peak_rate:,.0f}; p99 latency up to {max(p99s) * 1000:.0f} ms; "
        f"lag: groups {sorted(set(done['lag_rows']))}, peak {peak_lag:,} records, "
        f"sampled again {resampled - sampled_at:.1f} s after the last; "
        f"predictions/s charted x seconds {charted:,.1f} for {counted:,} counted; "
        f"drift PSI {psi}; KPI rows {done['kpi_rows']}; alerts {len(done['alerts'])}; "
        f"accuracy per window (estimated, realized) {[(w, e, r) for _, w, e, r in done['estimate_rows']]}; "
        f"screenshot {shot.stat().st_size:,} bytes"
    )
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert first["predictions"] < second["predictions"] < done["predictions"] == n
    assert done["events"] == n + invalid and done["dead"] == invalid
    assert first["throughput"] != second["throughput"], "the throughput chart moves while events stream"
    assert _peak(second["throughput"]) > 20, "the predictions/s line rises off zero"
    assert peak_rate > 0 and counted > 0 and charted == pytest.approx(counted, rel=1e-6)
    assert second["p99"] != "", "the latency chart has points while events stream"
    assert done["version"] == agrawal_bundle.version
    bars = {feature: drifted for feature, _, drifted in done["drift_bars"]}
    assert bars["salary"] is True and len(bars) == len(agrawal_bundle.spec.names)
    champion = f"{agrawal_bundle.name}:{agrawal_bundle.version}"
    assert champion in done["kpi_rows"] and any(m.startswith("river:") for m in done["kpi_rows"])
    assert {model for model, *_ in done["estimate_rows"]} == {champion}
    assert before["estimate_rows"] == [] and done["estimated"] != "" and done["realized"] != ""
    for _, _, estimated, realized in done["estimate_rows"]:
        assert 0 < estimated <= 1 and (realized == "" or 0 <= float(realized) <= 1)
    drift_alert = next(text for kind, text in done["alerts"] if kind == "drift")
    assert "salary" in drift_alert
    assert shot.stat().st_size > 30_000
