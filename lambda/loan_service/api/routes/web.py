"""``GET /``: the single-page form (``web/index.html``), read once at import."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

INDEX_HTML: Final = Path(__file__).resolve().parent.parent.parent / "web" / "index.html"

router = APIRouter(include_in_schema=False)
_page = INDEX_HTML.read_bytes()


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    """Relative URLs inside the page keep it working under an API Gateway stage prefix."""
    return HTMLResponse(_page, headers={"cache-control": "no-cache"})
