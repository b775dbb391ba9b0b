"""Alerts posted to a webhook (``monitoring.webhook_url``): one JSON object per alert,
from a thread of its own so a slow receiver never holds a round up. A POST that fails
becomes a ``Warning`` (code ``alert-webhook``), told from the run's thread at the next
round's end (or the run's), since the observers it reaches write from that thread; the
run goes on."""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

from fedpilot.orchestrator.events import Alert, Callback, RoundSummary, RunInfo, RunResult
from fedpilot.types import RoundContext

_DONE = object()


class AlertWebhook(Callback):
    """POSTs every alert of the run to ``url``.

    Args:
        url: where to POST.
        events: the run's callbacks, told of a failed POST as a warning.
        timeout: seconds one POST may take.
    """

    def __init__(self, url: str, events: Callback, *, timeout: float = 5.0) -> None:
        self.url = url
        parsed = httpx.URL(url)
        # Where, without the path: a webhook's path often holds its secret token.
        self._where = f"{parsed.scheme}://{parsed.host}" + (
            f":{parsed.port}" if parsed.port else ""
        )
        self._events = events
        self._timeout = timeout
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._run_id = ""
        self._failures: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        """Failed POSTs (round, message), to tell from the run's thread."""

    def on_run_start(self, *, run: RunInfo) -> None:
        self._run_id = run.run_id
        self._thread = threading.Thread(target=self._send, name="fedpilot-webhook", daemon=True)
        self._thread.start()

    def on_alert(self, *, round: int, alert: Alert) -> None:
        self._queue.put(
            {
                "run_id": self._run_id,
                "round": round,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "alert": alert.name,
                "state": alert.state,
                "severity": alert.severity,
                "summary": alert.summary,
                "value": alert.value,
            }
        )

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self._tell_failures()

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        """Sends what is queued (each POST within its timeout), then stops."""
        self.close()
        self._tell_failures()

    def _tell_failures(self) -> None:
        while not self._failures.empty():
            round_, message = self._failures.get()
            self._events.on_warning(round=round_, code="alert-webhook", message=message)

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_DONE)
        self._thread.join()
        self._thread = None

    def _send(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (payload := self._queue.get()) is not _DONE:
                try:
                    response = client.post(self.url, json=payload)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    detail = (
                        f"HTTP {exc.response.status_code}"
                        if isinstance(exc, httpx.HTTPStatusError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    self._failures.put(
                        (
                            int(payload["round"]),
                            f"posting alert {payload['alert']} ({payload['state']}) to "
                            f"{self._where} failed: {detail}",
                        )
                    )


__all__ = ["AlertWebhook"]
