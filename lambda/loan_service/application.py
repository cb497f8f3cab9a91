"""``create_app``: verify the artifacts, load the model once, wire the routes and the middleware.

Everything that can be done once happens here, at import of ``main``: the sha256 checks, the ONNX
session, a warm-up prediction, the request models. ``ServiceApp`` (``main.app``) is the ASGI
application: the middleware, then the two hot routes (``api/routes/predict.py``) answered
directly, and every other request, and uvicorn's lifespan, handed to the FastAPI application
(``api/app.py``). Nothing imported here loads FastAPI: it is built when a request or the
lifespan first needs it, so a Lambda function's first prediction does not wait for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from loan_service import long_lived_startup
from loan_service.api.routes.predict import HOT_ROUTES
from loan_service.artifacts import ArtifactError, load_artifacts
from loan_service.loading import build_assessor
from loan_service.middleware import (
    MAX_BODY_BYTES,
    ExternalPathMiddleware,
    RequestBodyMiddleware,
    RequestContextMiddleware,
    route_path,
)
from loan_service.observability import Observability
from loan_service.prediction_log import PredictionLog, build_prediction_log
from loan_service.reference_bins import ReferenceBinCounter
from loan_service.service import PredictionService
from loan_service.settings import Settings
from loan_service.shadow import ChallengerSpec, ShadowScorer, challenger_folder

if TYPE_CHECKING:
    from fastapi import FastAPI

SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent  # lambda/ here, /var/task in the image


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


class ServiceApp(RequestContextMiddleware):
    """``main.app``: ``RequestContextMiddleware`` (this class: no extra layer per request), the
    external path, the body checks, then ``dispatch``.

    ``dispatch`` hands a ``POST`` to a hot route's path straight to that route, and everything
    else (other paths and methods, the lifespan) to the FastAPI application, which it builds on
    first need (``api``): on a server that is the lifespan's start-up, before any request; on
    Lambda (Mangum runs no lifespan) the first request for another path pays for importing
    FastAPI, and a prediction never does."""

    def __init__(self, settings: Settings, service: PredictionService) -> None:
        self.service = service
        self.hot_apps: dict[str, ASGIApp] = {
            route.path: route.bind(service) for route in HOT_ROUTES
        }
        self._api: FastAPI | None = None
        body_checks = RequestBodyMiddleware(self.dispatch, max_bytes=MAX_BODY_BYTES)
        super().__init__(ExternalPathMiddleware(body_checks, base_path=settings.api_base_path))

    @property
    def api(self) -> FastAPI:
        """The FastAPI application (built once, with the collector paused as at start-up)."""
        if self._api is None:
            with long_lived_startup():
                from loan_service.api.app import create_api

                self._api = create_api(self.service, self.hot_apps)
        return self._api

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = self.hot_apps.get(route_path(scope))
            if hot is not None:
                await hot(scope, receive, send)
                return
        await self.api(scope, receive, send)

    def openapi(self) -> dict[str, object]:
        """The OpenAPI document (``/openapi.json``)."""
        document: dict[str, object] = self.api.openapi()
        return document


def create_app(
    settings: Settings | None = None,
    *,
    source_root: Path = SOURCE_ROOT,
    service: PredictionService | None = None,
) -> ServiceApp:
    """The service's ASGI application (``main.app``); pass ``service`` to reuse a loaded one."""
    settings = settings or Settings()
    return ServiceApp(settings, service or build_service(settings, source_root))
