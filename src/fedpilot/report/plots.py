"""The report's figures: matplotlib, drawn to SVG and inlined (no image files, no scripts).

Each plot function returns a :class:`Plot` or None when the run has nothing to draw for
it (the page then says so in words: an empty axis would look like a broken chart).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from fedpilot.report.facts import RunFacts

# Matplotlib is imported inside the functions: `fedpilot --help` stays fast.

_COLORS = {
    "metric": "#1f77b4",
    "rollback": "#d62728",
    "failed": "#7f7f7f",
    "online": "#9467bd",
    "selected": "#ff7f0e",
    "accepted": "#2ca02c",
    "sent": "#1f77b4",
    "received": "#17becf",
    "rejected": "#d62728",
}


@dataclass(frozen=True)
class Plot:
    """One inline SVG figure; ``points`` counts the data points it draws."""

    key: str
    svg: str
    points: int
    caption: str = ""


def _figure(width: float = 7.5, height: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Any, key: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text stays text (no embedded glyph outlines; the page's font draws it); fixed ids
    # and no date, so the same run makes the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Several SVGs share one page: each one's ids get its own prefix.
    text = re.sub(r'id="([^"]+)"', rf'id="{key}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", text)
    return re.sub(r'href="#([^"]+)"', rf'href="#{key}-\1"', text)


def _by_round(ax: Any) -> None:
    """Rounds on the x axis: whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def guarded_metric(facts: RunFacts) -> Plot | None:
    name = facts.guard_metric
    rows = [r for r in facts.rounds if name is not None and name in r.metrics]
    if name is None or not rows:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(
        [r.round for r in rows],
        [r.metrics[name] for r in rows],
        marker="o",
        markersize=3,
        color=_COLORS["metric"],
        label=f"global {name}",
    )
    companions = _companion_metrics(rows, name)
    # Same scale: precision, recall, mAP@0.5 beside mAP@0.5:0.95 (colours after C0, the
    # guarded metric's).
    for number, other in enumerate(companions, start=1):
        kept = [r for r in rows if other in r.metrics]
        ax.plot([r.round for r in kept], [r.metrics[other] for r in kept], marker=".",
                markersize=3, linewidth=1, color=f"C{number}", label=f"global {other}")  # fmt: skip
    back = [r for r in facts.rounds if r.status == "rolled_back" and name in r.candidate]
    if back:
        ax.scatter(
            [r.round for r in back],
            [r.candidate[name] for r in back],
            marker="x",
            s=60,
            color=_COLORS["rollback"],
            label="rolled back (the refused model)",
            zorder=3,
        )
        for r in back:
            ax.axvline(r.round, color=_COLORS["rollback"], alpha=0.15, linewidth=6)
    failed = [r.round for r in facts.rounds if r.status == "failed"]
    for number in failed:
        ax.axvline(number, color=_COLORS["failed"], linestyle=":", linewidth=1)
    _by_round(ax)
    ax.set_ylabel("global metrics" if companions else name)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    caption = f"{name} of the global model after each round; {len(back)} rollbacks"
    if companions:
        caption = f"{name} (guarded) and {', '.join(companions)} " + caption.split(" ", 1)[1]
    if failed:
        caption += f", {len(failed)} failed rounds (dotted)"
    points = len(rows) + sum(1 for other in companions for r in rows if other in r.metrics)
    return Plot("metric", _svg(fig, "metric"), points, caption)


def _companion_metrics(rows: list[Any], guarded: str) -> list[str]:
    """The other global metrics on the guarded one's scale, when that is [0, 1] (the
    detection metrics beside mAP@0.5:0.95); never the loss."""

    def unit(name: str) -> bool:
        return all(0.0 <= r.metrics[name] <= 1.0 for r in rows if name in r.metrics)

    if not unit(guarded):
        return []
    names = {n for r in rows for n in r.metrics} - {guarded, "loss"}
    return sorted(n for n in names if unit(n))


def participation(facts: RunFacts) -> Plot | None:
    rows = facts.rounds
    if not rows:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    rounds = [r.round for r in rows]
    online = [(r.round, r.online) for r in rows if r.online is not None]
    if online:
        ax.plot(
            [x for x, _ in online],
            [y for _, y in online],
            drawstyle="steps-mid",
            color=_COLORS["online"],
            label="online",
        )
    ax.plot(rounds, [r.selected for r in rows], marker="o", markersize=3,
            color=_COLORS["selected"], label="selected")  # fmt: skip
    ax.plot(rounds, [r.accepted for r in rows], marker="s", markersize=3,
            color=_COLORS["accepted"], label="accepted")  # fmt: skip
    _by_round(ax)
    ax.set_ylabel("learners")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    points = len(rows) * 2 + len(online)
    return Plot("participation", _svg(fig, "participation"), points)


def learner_spread(facts: RunFacts) -> Plot | None:
    per_round = facts.learner_metrics
    name = _spread_metric(facts)
    if name is None:
        return None
    rounds = sorted(r for r in per_round if any(name in m for m in per_round[r].values()))
    values = [[m[name] for m in per_round[r].values() if name in m] for r in rounds]
    fig = _figure()
    ax = fig.add_subplot()
    ax.boxplot(values, positions=rounds, widths=0.6, manage_ticks=False,
               flierprops={"markersize": 3})  # fmt: skip
    _by_round(ax)
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    points = sum(len(v) for v in values)
    caption = f"the {name} each accepted update reported, by round (box: quartiles)"
    return Plot("spread", _svg(fig, "spread"), points, caption)


def _spread_metric(facts: RunFacts) -> str | None:
    seen: Counter[str] = Counter()
    for learners in facts.learner_metrics.values():
        for metrics in learners.values():
            seen.update(k for k in metrics if not k.startswith("sys."))
    for name in (facts.guard_metric, "loss", "accuracy"):
        if name is not None and name in seen:
            return name
    return min(seen) if seen else None


def rejections(facts: RunFacts) -> Plot | None:
    if not facts.outcomes:
        return None
    categories = sorted({c for _, c in facts.outcomes}, key=lambda c: -_total(facts, c))
    fig = _figure(height=max(1.6, 0.45 * len(categories) + 0.9))
    ax = fig.add_subplot()
    left = [0] * len(categories)
    for outcome in ("rejected", "failed"):
        counts = [facts.outcomes.get((outcome, c), 0) for c in categories]
        if any(counts):
            ax.barh(categories, counts, left=left, color=_COLORS[outcome], label=outcome)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("updates")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize="small")
    return Plot("rejections", _svg(fig, "rejections"), len(categories))


def _total(facts: RunFacts, category: str) -> int:
    return sum(n for (_, c), n in facts.outcomes.items() if c == category)


def traffic(facts: RunFacts) -> Plot | None:
    rows = [r for r in facts.rounds if r.bytes_sent or r.bytes_received]
    if not rows:
        return None
    scale, unit = _byte_unit(max(max(r.bytes_sent, r.bytes_received) for r in rows))
    fig = _figure()
    ax = fig.add_subplot()
    rounds = [r.round for r in rows]
    ax.bar([x - 0.2 for x in rounds], [r.bytes_sent / scale for r in rows], width=0.4,
           color=_COLORS["sent"], label="to learners")  # fmt: skip
    ax.bar([x + 0.2 for x in rounds], [r.bytes_received / scale for r in rows], width=0.4,
           color=_COLORS["received"], label="from learners")  # fmt: skip
    _by_round(ax)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best", fontsize="small")
    return Plot("bytes", _svg(fig, "bytes"), 2 * len(rows))


def _byte_unit(largest: float) -> tuple[float, str]:
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if largest >= scale:
            return float(scale), unit
    return 1.0, "bytes"


def drift(facts: RunFacts) -> Plot | None:
    found = [
        e
        for e in facts.drift
        if _num(e.get("round")) is not None and _num(e.get("score")) is not None
    ]
    if not found:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for kind, marker in (("data", "o"), ("model", "^")):
        mine = (
            [e for e in found if e.get("kind") == kind]
            if kind == "data"
            else [e for e in found if e.get("kind") != "data"]
        )
        if mine:
            ax.scatter([_num(e["round"]) for e in mine], [_num(e["score"]) for e in mine],
                       marker=marker, label=f"{kind} drift")  # fmt: skip
    _by_round(ax)
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot("drift", _svg(fig, "drift"), len(found))


def privacy(facts: RunFacts) -> Plot | None:
    if not facts.epsilon:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([r for r, _ in facts.epsilon], [e for _, e in facts.epsilon], marker="o",
            markersize=3, color=_COLORS["metric"], label="ε spent")  # fmt: skip
    if facts.target_epsilon is not None:
        ax.axhline(facts.target_epsilon, color=_COLORS["rollback"], linestyle="--",
                   label=f"target ε = {facts.target_epsilon:g}")  # fmt: skip
    _by_round(ax)
    ax.set_ylabel("ε" + (f" at δ = {facts.delta:g}" if facts.delta else ""))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot("epsilon", _svg(fig, "epsilon"), len(facts.epsilon))


_SYSTEM = (
    ("sys.train_seconds", "train seconds"),
    ("sys.cpu_seconds", "CPU seconds"),
    ("sys.peak_rss_mb", "peak RSS (MB)"),
    ("sys.bytes_sent", "bytes sent"),
)


def system(facts: RunFacts) -> Plot | None:
    shown = [(k, label) for k, label in _SYSTEM if facts.system.get(k)]
    shown += [(k, k) for k in sorted(facts.system) if k not in dict(_SYSTEM)][: 4 - len(shown)]
    if not shown:
        return None
    fig = _figure(height=2.2 * ((len(shown) + 1) // 2))
    axes = fig.subplots((len(shown) + 1) // 2, 2, squeeze=False).ravel()
    points = 0
    for ax, (key, label) in zip(axes, shown, strict=False):
        by_learner = facts.system[key]
        learners = sorted(by_learner, key=_learner_order)
        means = [fmean(by_learner[learner]) for learner in learners]
        points += len(means)
        if len(learners) <= 40:
            ax.bar(range(len(learners)), means, color=_COLORS["metric"])
            step = max(1, len(learners) // 12)
            ax.set_xticks(range(0, len(learners), step), learners[::step], fontsize="x-small")
            ax.set_xlabel("learner")
        else:
            ax.hist(means, bins=20, color=_COLORS["metric"])
            ax.set_xlabel(f"mean {label} per learner")
            ax.set_ylabel("learners")
        ax.set_title(f"{label} (mean per update)", fontsize="small")
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    return Plot("system", _svg(fig, "system"), points)


def _learner_order(learner: str) -> tuple[int, int | str]:
    return (0, int(learner)) if learner.isdigit() else (1, learner)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


PLOTS = (guarded_metric, participation, learner_spread, rejections, traffic, drift, privacy, system)
"""Every figure, in the page's order."""
