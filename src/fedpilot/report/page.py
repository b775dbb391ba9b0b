"""The report as one HTML page: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape

from fedpilot.report import plots
from fedpilot.report.facts import RunFacts
from fedpilot.report.plots import Plot

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 62em; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { padding: 0.15em 0.8em 0.15em 0; text-align: left; vertical-align: top; }
th { color: #555; font-weight: normal; }
figure { margin: 0.5em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85em; }
.empty { color: #777; font-style: italic; }
.ok { color: #2a7a2a; } .bad { color: #b00020; font-weight: bold; } .warn { color: #a66b00; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""

_EMPTY = {
    "metric": "No round reported an evaluation of the global model.",
    "participation": "No round has ended yet.",
    "spread": "No accepted update reported a metric.",
    "rejections": "No update was rejected and no learner failed.",
    "bytes": "No bytes were counted.",
    "drift": "No drift was detected.",
    "epsilon": "Differential privacy was off: no privacy budget was spent.",
    "system": "No learner reported system metrics (sys.*).",
}
_TITLES = {
    "metric": "Guarded metric",
    "participation": "Learners online, selected and accepted",
    "spread": "Per-learner metric spread",
    "rejections": "Update rejections by reason",
    "bytes": "Bytes per round",
    "drift": "Drift events",
    "epsilon": "Privacy spent (ε) per round",
    "system": "System metrics per learner",
}


def render(facts: RunFacts, *, audit: str | None = None) -> str:
    """The page. ``audit``: what ``fedpilot audit verify`` says of the run, if asked."""
    detail = facts.detail
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # An inline icon: the browser asks for no favicon (offline, no console error).
        '<link rel="icon" href="data:,">',
        f"<title>fedpilot report: {escape(detail.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Run {escape(detail.run_id)}</h1>",
        _summary(facts, audit),
    ]
    extras: dict[str, Callable[[RunFacts], str]] = {
        "rejections": _reasons_table,
        "drift": _drift_table,
    }
    for function in plots.PLOTS:
        plot = function(facts)
        key = _KEYS[function.__name__]
        parts.append(f'<section id="{key}"><h2>{escape(_TITLES[key])}</h2>')
        parts.append(_figure(plot) if plot is not None else f'<p class="empty">{_EMPTY[key]}</p>')
        if key in extras:
            parts.append(extras[key](facts))
        parts.append("</section>")
    if facts.alerts:
        parts.append('<section id="alerts"><h2>Alerts</h2>' + _alerts_table(facts) + "</section>")
    parts.append('<section id="spec"><h2>Resolved spec</h2>')
    spec = escape(facts.spec_text) or "spec.yaml is missing"
    parts.append(f"<details><summary>spec.yaml</summary><pre>{spec}</pre></details></section>")
    made = datetime.now(UTC).isoformat(timespec="seconds")
    parts.append(f'<p class="empty">Made by <code>fedpilot report</code> at {made}.</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


_KEYS = {
    "guarded_metric": "metric",
    "participation": "participation",
    "learner_spread": "spread",
    "rejections": "rejections",
    "traffic": "bytes",
    "drift": "drift",
    "privacy": "epsilon",
    "system": "system",
}


def _figure(plot: Plot) -> str:
    caption = f"<figcaption>{escape(plot.caption)}</figcaption>" if plot.caption else ""
    return (
        f'<figure class="plot" data-plot="{plot.key}" data-points="{plot.points}">'
        f"{plot.svg}{caption}</figure>"
    )


def _summary(facts: RunFacts, audit: str | None) -> str:
    detail = facts.detail
    rows = [
        ("Name", escape(detail.name)),
        ("Status", escape(detail.status) + (f": {escape(detail.error)}" if detail.error else "")),
        ("Rounds", f"{detail.rounds_completed} of {detail.total_rounds or '?'}"),
        ("Rollbacks", str(detail.rollbacks)),
        ("Started", escape(str(detail.started_at or "-"))),
        ("Updated", escape(str(detail.updated_at or "-"))),
        ("Spec hash", escape(detail.spec_hash or "-")),
    ]
    rows += [(f"Final {escape(k)}", f"{v:.4g}") for k, v in sorted(detail.final_metrics.items())]
    if audit is not None:
        rows.append(("Audit log", audit))
    if facts.unreadable_lines:
        rows.append(
            ("Event log", f'<span class="warn">{facts.unreadable_lines} unreadable lines</span>')
        )
    for number, warning in enumerate(detail.warnings[:10]):
        text = f"round {warning.round}: {warning.message} [{warning.code}]"
        rows.append(
            ("Warnings" if number == 0 else "", f'<span class="warn">{escape(text)}</span>')
        )
    if len(detail.warnings) > 10:
        rows.append(("", f"… and {len(detail.warnings) - 10} more warnings (events.jsonl)"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _reasons_table(facts: RunFacts) -> str:
    if not facts.outcomes:
        return ""
    rows = "".join(
        f"<tr><td>{escape(outcome)}</td><td>{n}</td><td>{escape(facts.reasons[category])}</td></tr>"
        for (outcome, category), n in facts.outcomes.most_common()
    )
    return f"<table><tr><th>outcome</th><th>updates</th><th>e.g.</th></tr>{rows}</table>"


def _drift_table(facts: RunFacts) -> str:
    if not facts.drift:
        return ""
    names = ("round", "kind", "learner", "feature", "test", "score", "threshold", "reference")
    head = "".join(f"<th>{n}</th>" for n in names)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(e.get(n)))}</td>" for n in names) + "</tr>"
        for e in facts.drift[:_ROWS]
    )
    return f"<table><tr>{head}</tr>{rows}</table>{_more(facts.drift, 'drift events')}"


def _alerts_table(facts: RunFacts) -> str:
    names = ("round", "event", "name", "severity", "summary", "value")
    head = "".join(f"<th>{n}</th>" for n in names)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(e.get(n)))}</td>" for n in names) + "</tr>"
        for e in facts.alerts[:_ROWS]
    )
    return f"<table><tr>{head}</tr>{rows}</table>{_more(facts.alerts, 'alerts')}"


_ROWS = 200
"""The most rows a table of events shows."""


def _more(events: list[dict[str, object]], what: str) -> str:
    """What a table of ``events`` leaves out, in words (nothing when it shows them all)."""
    left = len(events) - _ROWS
    return f"<p>… and {left} more {what} (events.jsonl)</p>" if left > 0 else ""


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
