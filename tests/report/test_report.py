"""`fedpilot report`: the page opens in headless Chromium (Debian's, at /usr/bin/chromium)
offline, with no console error, and every plot on it has data. Screenshots go to
tests/artifacts/ (not committed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.federations import digits_spec

from clitools import fedpilot
from conftest import app_spec
from fedpilot.launch import run_federation
from fedpilot.report import write_report

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # A missing Chromium fails the test: `make services` installs it before the tests.
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: run `make services`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _open(browser: Any, page_file: Path, screenshot: str) -> tuple[Any, list[str], list[str]]:
    """The page, its console errors and every request it made that is not the file."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    # Offline: anything the page asks of the network fails (and is listed above).
    page.route("http*://**", lambda route: route.abort())
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return page, errors, [u for u in requests if u != page_file.as_uri()]


def _plots(page: Any) -> dict[str, dict[str, Any]]:
    """Each figure on the page: its data points (the data attribute the report writes),
    the paths its SVG draws and its rendered size."""
    found = page.eval_on_selector_all(
        "figure.plot",
        """figures => figures.map(f => {
            const svg = f.querySelector('svg');
            const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            return {key: f.dataset.plot, points: Number(f.dataset.points),
                    paths: svg ? svg.querySelectorAll('path').length : 0,
                    width: box.width, height: box.height};
        })""",
    )
    return {plot["key"]: plot for plot in found}


def _assert_plots_have_data(plots: dict[str, dict[str, Any]]) -> None:
    for key, plot in plots.items():
        assert plot["points"] > 0, key
        assert plot["paths"] > 10, key  # frame and ticks alone draw fewer
        assert plot["width"] > 200 and plot["height"] > 80, key


def _troubled_spec(tmp_path: Path) -> Path:
    """A testapp federation where one learner sends NaNs, one raises, every learner
    sabotages round 3 (the guard rolls it back), under central DP."""
    spec = app_spec(
        tmp_path,
        task__run_config={"nan-partition": 1, "raise-partition": 2, "sabotage-round": 3},
        rounds=5,
        guard={"enabled": True, "metric": "accuracy", "mode": "max"},
        privacy={"mode": "central", "clip_norm": 5.0, "noise_multiplier": 0.01},
        weighting={"scheme": "uniform"},
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


def _drift_and_alerts(run_dir: Path) -> None:
    """Events of the drift and alert parts, with their contract's fields."""
    lines = [
        {"event": "DriftDetected", "round": 4, "kind": "data", "learner": "3",
         "feature": "label", "score": 0.42, "threshold": 0.2, "test": "jensen-shannon",
         "reference": "own"},
        {"event": "DriftDetected", "round": 5, "kind": "model", "learner": None,
         "feature": "accuracy", "score": 0.31, "threshold": 0.1, "test": "trend",
         "reference": "federation"},
        {"event": "AlertFiring", "round": 3, "name": "AccuracyDecline", "state": "firing",
         "severity": "warning", "summary": "accuracy fell", "value": 0.3},
    ]  # fmt: skip
    with (run_dir / "events.jsonl").open("a") as log:
        log.writelines(json.dumps(line) + "\n" for line in lines)


def test_report_of_a_troubled_run_opens_offline_with_data_in_every_plot(
    tmp_path: Path, browser: Any
) -> None:
    spec = _troubled_spec(tmp_path)
    done = fedpilot("run", str(spec), "--report", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = Path(json.loads(done.stdout)["run_dir"])
    assert (run_dir / "report.html").is_file()  # --report wrote it
    _drift_and_alerts(run_dir)
    out = tmp_path / "elsewhere.html"
    again = fedpilot("report", run_dir.name, "--out", str(out), "-o", str(run_dir.parent),
                     cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    html = out.read_text()
    for outside in ("<script", 'src="http', 'rel="stylesheet"', "@import", "@font-face"):
        assert outside not in html
    page, errors, requests = _open(browser, out, "report-troubled.png")
    assert errors == [] and requests == []
    plots = _plots(page)
    assert set(plots) == {"metric", "participation", "spread", "rejections", "bytes", "drift",
                          "epsilon"}  # fmt: skip
    _assert_plots_have_data(plots)
    assert plots["rejections"]["points"] == 2  # NaNs (rejected) and a raise (failed)
    assert plots["drift"]["points"] == 2
    assert plots["epsilon"]["points"] == 5
    text = page.inner_text("body")
    assert "1 rollbacks" in text  # round 3's sabotaged model, marked on the metric plot
    assert "AccuracyDecline" in text and "jensen-shannon" in text
    assert "non-finite" in text and "RuntimeError" in text
    assert "intact" in text  # the audit log's verdict
    page.close()


def test_report_of_a_digits_run_shows_system_metrics_and_the_spec(
    tmp_path: Path, browser: Any
) -> None:
    spec = digits_spec(tmp_path, "digits", rounds=3)
    assert run_federation(spec).status == "completed"
    (run_dir,) = [p.parent for p in (tmp_path / "digits").rglob("events.jsonl")]
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page, errors, requests = _open(browser, path, "report-digits.png")
    assert errors == [] and requests == []
    plots = _plots(page)
    assert {"metric", "participation", "spread", "bytes", "system"} <= set(plots)
    _assert_plots_have_data(plots)
    assert "No drift was detected" in page.inner_text("body")
    assert "digits-mlp" in path.read_text()  # the resolved spec, in a <details> block
    page.close()


def test_report_of_an_unknown_run_exits_2(tmp_path: Path) -> None:
    done = fedpilot("report", "nope", "-o", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "no run matches 'nope'" in done.stderr and "Traceback" not in done.stderr
