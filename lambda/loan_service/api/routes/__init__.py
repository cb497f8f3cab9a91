"""One ``APIRouter`` per concern; ``application.create_app`` includes them all."""

from loan_service.api.routes import meta, predict, web

ROUTERS = (predict.router, meta.router, web.router)

__all__ = ["ROUTERS"]
