"""A run's report: one self-contained HTML page (``report.html`` in the run directory)
with the run's health at a glance, for people.

The guarded metric per round with rollbacks marked, learners online / selected / accepted
per round, the per-learner metric spread, update rejections by reason, bytes per round,
drift events, ε per round under differential privacy, system metrics per learner, the
audit log's verdict and the resolved spec. Plots are matplotlib SVG inlined in the page:
it needs no network, no script and no other file.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fedpilot.errors import UserError
from fedpilot.report.facts import RunFacts, read_run
from fedpilot.rundir import RunDir


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``run_dir``'s report to ``out`` (default ``<run_dir>/report.html``).

    Returns:
        The file written.

    Raises:
        UserError: The file cannot be written.
    """
    from fedpilot.report.page import render

    facts = read_run(run_dir)
    target = out if out is not None else RunDir(run_dir).report
    html = render(facts, audit=_audit(run_dir))
    try:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise UserError(f"cannot write the report {target}: {exc.strerror or exc}") from exc
    return target


def _audit(run_dir: Path) -> str:
    """The audit log's verdict, as a line of the page."""
    from fedpilot.audit import verify_log

    if not RunDir(run_dir).audit.is_file():
        return '<span class="warn">none (the run directory has no audit.jsonl)</span>'
    try:
        result = verify_log(run_dir)
    except UserError as exc:
        return f'<span class="warn">not checked: {escape(str(exc))}</span>'
    if not result.ok:
        return (
            f'<span class="bad">does not hold from line {result.bad_line}: '
            f"{escape(result.problem or '')}</span>"
        )
    text = (
        f'<span class="ok">intact</span>: {result.lines} lines, signed through line '
        f"{result.signed_through} with key {escape(result.key_id or '-')}"
    )
    if result.torn_tail:
        text += f' <span class="warn">(torn last line, {result.torn_tail} bytes)</span>'
    if result.notes:
        text += f' <span class="warn">({escape(result.notes[0])})</span>'
    return text


__all__ = ["RunFacts", "read_run", "write_report"]
