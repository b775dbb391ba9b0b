"""The HTTP endpoint that serves a run's metrics (``runtime.metrics_port``)."""

from __future__ import annotations

import errno
import socket

from prometheus_client import CollectorRegistry, start_http_server

from fedpilot.errors import SpecError


class MetricsEndpoint:
    """Serves ``registry`` over HTTP (``/metrics``) from a daemon thread until closed.

    Raises:
        SpecError: it cannot listen on ``host:port`` (the port in use, the host no
            address of this machine).
    """

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            # An address that does not resolve is the host's fault; anything else the port's.
            unknown = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
            field = "metrics_host" if unknown else "metrics_port"
            raise SpecError(
                f"`runtime.{field}`: cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                field=f"runtime.{field}",
            ) from None
        self.port = int(self._server.server_port)
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.port}/metrics"

    def close(self) -> None:
        """Stops serving and releases the port (once; later calls do nothing)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


__all__ = ["MetricsEndpoint"]
