"""Dependencies as ``Annotated`` aliases, so a route declares what it needs by type.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its threadpool, a
thread hand-off that costs more than the whole prediction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from loan_service.service import PredictionService, RequestContext


async def get_service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


async def get_request_context(request: Request) -> RequestContext:
    """Set by ``RequestContextMiddleware``; the fallback only matters for apps built without it."""
    state: dict[str, Any] = request.scope.get("state") or {}
    return RequestContext(
        request_id=state.get("request_id", ""),
        started_ns=state.get("started_ns", 0),
        started_wall_ns=state.get("started_wall_ns", 0),
    )


ServiceDep = Annotated[PredictionService, Depends(get_service)]
RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]
