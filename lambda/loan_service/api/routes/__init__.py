"""One ``APIRouter`` per concern; ``application.create_app`` includes them all.

The prediction routes join the application's own router instead of being included: in FastAPI
0.165 an included router resolves an inclusion context per request, a layer the hot routes skip.
"""

from loan_service.api.routes import meta, predict, web

PREDICTION_ROUTES = tuple(predict.router.routes)
ROUTERS = (meta.router, web.router)

__all__ = ["PREDICTION_ROUTES", "ROUTERS"]
