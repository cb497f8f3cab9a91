"""One module per concern: ``predict`` (the hot routes, no FastAPI), ``meta`` and ``web`` (one
``APIRouter`` each, included by ``api/app.py``)."""
