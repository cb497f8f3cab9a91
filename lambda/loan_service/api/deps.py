"""What FastAPI's routes need from the app: the loaded service.

``ServiceDep`` is the ``Annotated`` dependency alias the light routes declare (the hot routes are
given the service when they are bound, ``HotRoute.bind``). Dependencies are ``async def``:
FastAPI runs a plain ``def`` one in its threadpool, a thread hand-off that costs more than the
prediction itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loan_service.service import PredictionService


async def get_service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.service
    return service


ServiceDep = Annotated[PredictionService, Depends(get_service)]
