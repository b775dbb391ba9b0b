"""``fedpilot serve``: answer predictions of a registered model over HTTP."""

from __future__ import annotations

import gc
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fedpilot.errors import UserError
from fedpilot.rundir import mlflow_db
from fedpilot.spec.sections import default_output_dir

if TYPE_CHECKING:
    from fedpilot.serving import Canary, Limits, ModelRef


def serve_command(
    model: Annotated[
        str,
        typer.Argument(
            help="A registered model: NAME (its champion), NAME@alias (followed live) or "
            "NAME/version (pinned)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = 8080,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="The MLflow store; default: the mlflow.db of --output-dir."),
    ] = None,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "-o",
            help="The runs directory (the spec's output_dir).",
            file_okay=False,
        ),
    ] = default_output_dir(),
    canary: Annotated[
        str | None,
        typer.Option(
            help="ALIAS=PERCENT: send that share of requests to the version ALIAS names, "
            "e.g. challenger=10."
        ),
    ] = None,
    key_header: Annotated[
        str, typer.Option(help="Header whose value keeps a caller on one side of the canary.")
    ] = "X-Fedpilot-Key",
    max_body_bytes: Annotated[
        int, typer.Option(help="Larger request bodies are refused (413).")
    ] = 1 << 20,
    max_rows: Annotated[int, typer.Option(help="Larger batches are refused (413).")] = 1024,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between looks at the registry's aliases.")
    ] = 2.0,
) -> None:
    """Serve a registered model MODEL: NAME (its champion), NAME@alias (followed live) or
    NAME/version (pinned). POST /predict, GET /health, /ready, /metadata, /metrics and
    /docs. Alias moves in the registry (a promotion, a rollback) take effect live."""
    from fedpilot.serving import Canary, Limits, ModelRef

    ref = ModelRef.parse(model)
    canary_share = Canary.parse(canary) if canary is not None else None
    if canary_share is not None and canary_share.alias == ref.alias:
        raise UserError(f"--canary {canary} names the alias MODEL already serves ({ref})")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    if max_body_bytes < 64 or max_rows < 1:
        raise UserError(
            f"--max-body-bytes must be >= 64 and --max-rows >= 1, got {max_body_bytes} "
            f"and {max_rows}"
        )
    if not 0.05 <= poll_interval <= 3600:
        raise UserError(f"--poll-interval must be 0.05 to 3600 seconds, got {poll_interval}")
    limits = Limits(max_body_bytes=max_body_bytes, max_rows=max_rows, key_header=key_header)
    if tracking_uri is None:
        # The store `fedpilot run` and `fedpilot models` use for these runs.
        db = mlflow_db(output_dir).resolve()
        if not db.is_file():
            raise UserError(
                f"no MLflow store at {db} (--output-dir {output_dir}); give the runs' "
                "--output-dir or --tracking-uri"
            )
        tracking_uri = f"sqlite:///{db}"
    _serve(ref, canary_share, host, port, tracking_uri, limits, poll_interval)


def _serve(
    ref: ModelRef,
    canary: Canary | None,
    host: str,
    port: int,
    uri: str,
    limits: Limits,
    poll_interval: float,
) -> None:
    import uvicorn

    from fedpilot._threads import limit_torch_threads
    from fedpilot.serving import ModelService, ModelStore, create_app
    from fedpilot.serving.service import describe

    _log_to_stderr()
    service = ModelService(ModelStore(uri), ref, canary)
    # Inference of one small batch is fastest on one thread; more only contend with the
    # event loop for the cores.
    limit_torch_threads(1)
    listener = _listen(host, port)
    app = create_app(service, limits=limits)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"fedpilot serve: {describe(service.routes)} on http://{shown}:{bound} (API: /docs)",
          flush=True)  # fmt: skip
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False, timeout_graceful_shutdown=5
    )
    # Everything loaded so far (MLflow, torch, the model) lives as long as the process:
    # frozen, the collector's full passes skip it. Unfrozen, one such pass scans some
    # 400,000 objects and stalls every request in flight for 0.1-0.5 s.
    gc.collect()
    gc.freeze()
    service.watch(poll_interval)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        service.close()
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, so that a taken port is a clear error before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now: a client told the address below may connect before the event
        # loop runs (the kernel queues it), never to a refusal.
        sock.listen(2048)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _log_to_stderr() -> None:
    logger = logging.getLogger("fedpilot.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fedpilot serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


__all__ = ["serve_command"]
