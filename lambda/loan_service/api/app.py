"""``create_api``: the FastAPI application behind ``main.app`` (``application.ServiceApp``).

It serves every request but the two hot routes (the web page, ``/health``, ``/model``,
``/openapi.json``, ``/docs``, FastAPI's 404 and 405), runs the server lifespan, and documents the
hot routes too (``HOT_ROUTES``): ``/openapi.json`` describes both bodies and every answer. On
Lambda it is built on the first request that needs it, not at import: importing FastAPI is the
largest single part of a cold start, and most invocations are predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp

from loan_service.api.errors import install_error_handlers
from loan_service.api.routes import meta, web
from loan_service.api.routes.predict import ERROR_RESPONSES, HOT_ROUTES, HotRoute
from loan_service.middleware import MAX_BODY_BYTES
from loan_service.schemas import RequestModels
from loan_service.service import PredictionService

API_TITLE: Final = "Loan default prediction"
SHUTDOWN_FLUSH_SECONDS: Final = 5.0
SWAGGER_UI_VERSION: Final = "5.17.14"
SWAGGER_UI_CDN: Final = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
# Subresource Integrity of the two assets: the sha384 of the files in the npm package
# swagger-ui-dist at that version, which jsDelivr serves byte for byte. The browser runs no other
# bytes, so a compromised CDN cannot put script into the origin that holds the API key. A test
# recomputes both from the package (package.json pins it; `npm ci` installs it).
SWAGGER_UI_INTEGRITY: Final[dict[str, str]] = {
    "swagger-ui-bundle.js": (
        "sha384-wmyclcVGX/WhUkdkATwhaK1X1JtiNrr2EoYJ+diV3vj4v6OC5yCeSu+yW13SYJep"
    ),
    "swagger-ui.css": "sha384-wxLW6kwyHktdDGr6Pv1zgm/VGJh99lfUbzSn6HNHBENZlCN7W602k9VkGdxuFvPn",
}
# FastAPI's native OpenTelemetry hooks stay off: they would cost time on every request if any
# library (MLflow) ever installed a global tracer provider.
_NO_TELEMETRY: Final[TelemetryConfig] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
ROUTERS: Final = (meta.router, web.router)


def _server_lifespan(
    service: PredictionService,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Long-lived servers only: periodic EMF on ECS, and drain the prediction log at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        publisher = None
        if service.observability.publishes_server_metrics:
            publisher = asyncio.create_task(service.observability.publish_server_metrics_forever())
        try:
            yield
        finally:
            if publisher is not None:
                publisher.cancel()
                service.observability.flush_server_metrics()
            if service.shadow is not None:
                await asyncio.to_thread(service.shadow.close, SHUTDOWN_FLUSH_SECONDS)
            await asyncio.to_thread(service.prediction_log.close, SHUTDOWN_FLUSH_SECONDS)

    return lifespan


class DocumentedHotRoute(APIRoute):
    """A hot route as FastAPI documents it: its summary, its endpoint's docstring, its body's
    schema by name, its answers. ``main.app`` answers the route before FastAPI is reached; were
    FastAPI ever to route a request here, the same bound hot route answers it (``self.app``)."""

    def __init__(self, route: HotRoute, app: ASGIApp) -> None:
        super().__init__(
            route.path,
            _reads_its_own_body,
            methods=["POST"],
            name=route.endpoint.__name__,
            summary=route.summary,
            description=route.description,
            response_model=route.response_model,
            responses=ERROR_RESPONSES,
            tags=["predictions"],
            openapi_extra=_request_body(route.request_schema),
        )
        self.app = app


async def _reads_its_own_body() -> None:
    """The signature FastAPI documents a hot route's parameters from: none, as the route reads
    its raw body (the body's schema is in ``openapi_extra``). ``self.app`` answers instead."""


def _request_body(name: str) -> dict[str, Any]:
    """The operation's ``requestBody``, as FastAPI writes it for a model body parameter."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def create_api(service: PredictionService, hot_apps: Mapping[str, ASGIApp]) -> FastAPI:
    """The FastAPI application for ``service``; ``hot_apps`` are the bound hot routes."""
    manifest = service.bundle.manifest
    app = FastAPI(
        title=API_TITLE,
        version=manifest.model_version,
        summary="Probability of default, decision, reasons and expected loss for loan applicants.",
        description=(
            f"Model `{manifest.model_version}` ({manifest.model.name}), threshold "
            f"{manifest.threshold}. Bodies are JSON, at most {MAX_BODY_BYTES // 1024} KiB."
        ),
        redoc_url=None,
        docs_url=None,  # served below with Swagger UI pinned to an exact version
        lifespan=_server_lifespan(service),
        telemetry=_NO_TELEMETRY,
        # A body without Content-Type is JSON (see ``RequestBodyMiddleware`` for why).
        strict_content_type=False,
    )
    app.state.service = service
    # First in the document, as they are first in ``main.app``'s dispatch.
    documented = [DocumentedHotRoute(route, hot_apps[route.path]) for route in HOT_ROUTES]
    app.router.routes[:0] = documented
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    _document_request_bodies(app, service.request_models)
    _add_docs(app)
    return app


def _document_request_bodies(app: FastAPI, models: RequestModels) -> None:
    """Add the prediction routes' body models to the OpenAPI components.

    Those routes read the raw body themselves (``api/routes/predict.py``), so FastAPI does not
    see the models; their operations name them in ``openapi_extra``. The schemas are generated
    as FastAPI generates a body parameter's (pydantic, validation mode, the same ref template).
    """
    build_document = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            document = build_document()
            _, definitions = models_json_schema(
                [(model, "validation") for model in (models.application, models.batch)],
                ref_template="#/components/schemas/{model}",
            )
            schemas = {**document["components"]["schemas"], **definitions["$defs"]}
            document["components"]["schemas"] = dict(sorted(schemas.items()))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _with_integrity(page: str) -> str:
    """Swagger UI's page with ``integrity`` and ``crossorigin`` on its two CDN assets."""
    for name, digest in SWAGGER_UI_INTEGRITY.items():
        url = f"{SWAGGER_UI_CDN}/{name}"
        tag = f'src="{url}"' if name.endswith(".js") else f'href="{url}"'
        if tag not in page:
            raise RuntimeError(f"Swagger UI's page no longer loads {name} as expected")
        page = page.replace(tag, f'{tag} integrity="{digest}" crossorigin="anonymous"')
    return page


def _add_docs(app: FastAPI) -> None:
    """``/docs``: FastAPI's Swagger UI page, its assets at one exact version, not ``@5``."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root_path}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{SWAGGER_UI_CDN}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI_CDN}/swagger-ui.css",
        )
        return HTMLResponse(_with_integrity(bytes(page.body).decode()))
