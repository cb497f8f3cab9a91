"""What routes need from the app: the loaded service and the request's context.

``ServiceDep`` is the ``Annotated`` dependency alias the light routes declare. The two prediction
routes take the ``Request`` instead and call the same helpers directly: in FastAPI 0.165 each
dependency costs 10-15 us per request to resolve (measured: 73 vs 52 us per request for a
minimal POST route with two of them), which is a tenth of a prediction's whole budget.
Dependencies are ``async def``: FastAPI runs a plain ``def`` one in its threadpool, a thread
hand-off that costs more than the prediction itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loan_service.service import PredictionService, RequestContext


def service_of(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


def request_context_of(request: Request) -> RequestContext:
    """Stamped by ``RequestContextMiddleware``."""
    return RequestContext.of_scope(request.scope)


async def get_service(request: Request) -> PredictionService:
    return service_of(request)


ServiceDep = Annotated[PredictionService, Depends(get_service)]
