"""The HTTP face of a :class:`ModelService`: FastAPI routes over the current versions.

``/predict`` reads its body itself rather than through a pydantic model: the body is
checked against the model's signature in one pass over a numpy array (``inputs.py``),
which is what keeps the request path at about a millisecond. Its schema is still
declared, so ``/docs`` shows it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect

from fedpilot import __version__
from fedpilot.serving.inputs import BadInput
from fedpilot.serving.metrics import ServingMetrics
from fedpilot.serving.routing import Route, Router
from fedpilot.serving.service import ModelService, describe

log = logging.getLogger("fedpilot.serving")

VERSION_HEADER = "X-Fedpilot-Model-Version"


@dataclass(frozen=True)
class Limits:
    """What one request may ask, and the header that keeps a caller on one side of a canary."""

    max_body_bytes: int = 1 << 20
    max_rows: int = 1024
    key_header: str = "X-Fedpilot-Key"


def create_app(
    service: ModelService, *, limits: Limits | None = None, metrics: ServingMetrics | None = None
) -> FastAPI:
    """The server's app; ``service`` already holds loaded versions."""
    limits = limits or Limits()
    metrics = metrics or ServingMetrics(service)
    router = Router()
    name = service.ref.name
    first = service.routes.primary.model.input
    # FastAPI's own /docs page fetches Swagger UI from a CDN; FastAPIOffline serves the
    # same page with Swagger UI's files from its package, so /docs works offline.
    app = FastAPIOffline(
        title=f"fedpilot serve: {name}",
        version=__version__,
        description=f"Predictions of the registered model {name} ({describe(service.routes)}).",
    )

    def answer(route: Route, status: int, payload: dict[str, Any], started: float) -> Response:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        version = route.model.version
        metrics.observe(
            model=name,
            version=version,
            role=route.role,
            status=status,
            seconds=time.perf_counter() - started,
        )
        return Response(
            body, status, media_type="application/json", headers={VERSION_HEADER: version}
        )

    @app.post(
        "/predict",
        summary="Predict a batch",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": first.json_schema(),
                        "example": {"inputs": first.zeros().tolist()},
                    }
                },
            }
        },
        responses={
            200: {"description": "`predictions` (labels), `scores` for a classifier, and "
                  "the `version` and `alias` that answered"},
            400: {"description": "the body is not JSON"},
            413: {"description": "the body or the batch is larger than the server takes"},
            422: {"description": "the batch does not fit the model's signature"},
        },
    )  # fmt: skip
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        route = router.pick(service.routes, request.headers.get(limits.key_header))
        model = route.model
        try:
            body = await _read_body(request, limits.max_body_bytes)
            batch = model.input.parse(body, max_rows=limits.max_rows)
        except BadInput as exc:
            return answer(route, exc.status, {"detail": exc.message}, started)
        try:
            # On the event loop, not in a worker thread: a small model's batch takes less
            # time than the hop to a thread and back.
            result = model.predict(batch)
        except Exception as exc:  # the model's own failure on valid input is ours: 500
            log.exception("model %s version %s failed on a valid batch", name, model.version)
            detail = f"model {name} version {model.version} failed: {type(exc).__name__}"
            return answer(route, 500, {"detail": detail}, started)
        payload = {"model": name, "version": model.version, "alias": route.alias, **result}
        return answer(route, 200, payload, started)

    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="A model version is loaded and takes requests")
    async def ready() -> dict[str, Any]:
        # The server refuses to start without a loaded version and never unloads the
        # last one, so once it listens it is ready.
        return {"ready": True, "serving": describe(service.routes)}

    @app.get("/metadata", summary="The versions served: alias, lineage, signature")
    async def metadata() -> dict[str, Any]:
        routes = service.routes
        canary = None
        if routes.canary is not None:
            canary = _route_info(routes.canary) | {"share_percent": routes.basis_points / 100}
        return {
            "name": name,
            "serving": describe(routes),
            "follows_aliases": service.follows_aliases,
            "primary": _route_info(routes.primary),
            "canary": canary,
            "limits": asdict(limits),
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = f"the body is larger than {limit} bytes (--max-body-bytes)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadInput(413, too_large)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked body declares no length
                raise BadInput(413, too_large)
            chunks.append(chunk)
    except ClientDisconnect:  # the client's doing: no traceback in the server's log
        raise BadInput(400, "the client closed the connection before the body ended") from None
    return b"".join(chunks)


def _route_info(route: Route) -> dict[str, Any]:
    model = route.model
    return {
        "role": route.role,
        "alias": route.alias,
        "version": model.version,
        "run_id": model.run_id,
        "source": model.source,
        "lineage": model.tags,
        "input": model.input.describe(),
        "outputs_scores": model.scores,
        "signature": model.signature,
    }
