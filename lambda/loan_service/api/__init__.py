"""HTTP layer: the routes, their dependencies, FastAPI's application and error handlers."""
