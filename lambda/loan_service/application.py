"""``create_app``: verify the artifacts, load the model once, wire routes, middleware and errors.

Everything that can be done once happens here, at import of ``main``: the sha256 checks, the ONNX
session, a warm-up prediction, the response models. The lifespan below only serves long-lived
servers (uvicorn); Mangum runs with ``lifespan="off"`` because it would run it on every invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.telemetry import TelemetryConfig
from pydantic.json_schema import models_json_schema
from starlette.middleware import Middleware

from loan_service.api.routes import PREDICTION_ROUTES, ROUTERS
from loan_service.artifacts import ArtifactError, load_artifacts
from loan_service.errors import install_error_handlers
from loan_service.loading import build_assessor
from loan_service.middleware import (
    MAX_BODY_BYTES,
    ExternalPathMiddleware,
    RequestBodyMiddleware,
    RequestContextMiddleware,
)
from loan_service.observability import Observability
from loan_service.prediction_log import PredictionLog, build_prediction_log
from loan_service.reference_bins import ReferenceBinCounter
from loan_service.schemas import RequestModels
from loan_service.service import PredictionService
from loan_service.settings import Settings
from loan_service.shadow import ChallengerSpec, ShadowScorer, challenger_folder

SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent  # lambda/ here, /var/task in the image
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


def build_service(
    settings: Settings,
    source_root: Path = SOURCE_ROOT,
    prediction_log: PredictionLog | None = None,
    log_stream: IO[str] | None = None,
) -> PredictionService:
    """Verify and load the artifacts (raising ``ArtifactError``), then start the logger."""
    bundle = load_artifacts(settings.resolve_artifact_dir(source_root))
    features = bundle.manifest.book.feature_names
    assessor = build_assessor(bundle, settings.model_runtime, settings.recovery_rate)
    shadow = build_shadow(
        settings, source_root, bundle.manifest.model_version, features, log_stream
    )
    log = (
        prediction_log
        if prediction_log is not None
        else build_prediction_log(settings, features=features)
    )
    observability = Observability(
        settings,
        log,
        stream=log_stream,
        model_version=bundle.manifest.model_version,
        reference_bins=ReferenceBinCounter.of(bundle.reference, bundle.manifest.book),
    )
    service = PredictionService(
        bundle=bundle,
        assessor=assessor,
        observability=observability,
        prediction_log=log,
        shadow=shadow,
    )
    service.warm_up()
    return service


def build_shadow(
    settings: Settings,
    source_root: Path,
    champion_version: str,
    features: tuple[str, ...],
    log_stream: IO[str] | None = None,
) -> ShadowScorer | None:
    """The challenger, verified like the champion whenever the image carries one (it must take
    the champion's features: the same requests are scored by both). With a sample rate, its
    worker process is started; its pairs go to the service's log stream (stdout unless given)."""
    folder = challenger_folder(settings.resolve_artifact_dir(source_root))
    if not folder.is_dir():
        if settings.shadow_sample_rate > 0:
            raise ArtifactError(
                f"SHADOW_SAMPLE_RATE is {settings.shadow_sample_rate:g} but there is no "
                f"challenger artifact folder at {folder}"
            )
        return None
    try:
        challenger = build_assessor(
            load_artifacts(folder, features), settings.model_runtime, settings.recovery_rate
        )
    except ArtifactError as exc:
        raise ArtifactError(f"challenger: {exc}") from exc
    if settings.shadow_sample_rate == 0:
        return None
    return ShadowScorer(
        ChallengerSpec(
            folder=folder,
            features=features,
            model_version=challenger.model_version,
            model_runtime=settings.model_runtime,
            recovery_rate=settings.recovery_rate,
            service_name=settings.service_name,
        ),
        champion_version,
        settings.shadow_sample_rate,
        write=None if log_stream is None else log_stream.write,
    )


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


def create_app(
    settings: Settings | None = None,
    *,
    source_root: Path = SOURCE_ROOT,
    service: PredictionService | None = None,
) -> FastAPI:
    """The FastAPI application (``main.app``); pass ``service`` to reuse an already loaded one."""
    settings = settings or Settings()
    service = service or build_service(settings, source_root)
    manifest = service.bundle.manifest
    middleware = [
        Middleware(RequestContextMiddleware),
        Middleware(ExternalPathMiddleware, base_path=settings.api_base_path),
        Middleware(RequestBodyMiddleware, max_bytes=MAX_BODY_BYTES),
    ]
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
        middleware=middleware,
        telemetry=_NO_TELEMETRY,
        # A body without Content-Type is JSON (see ``RequestBodyMiddleware`` for why).
        strict_content_type=False,
    )
    app.state.service = service
    # The hot routes are matched first (FastAPI put its /openapi.json route in the list already).
    app.router.routes[:0] = PREDICTION_ROUTES
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
