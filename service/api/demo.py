"""`GET /`: the demo page, a browser client of the public API (`POST /predict`, `GET /v1/model`).

The page is static package data (`service/static/`: HTML, JavaScript, CSS, icon; no build step, nothing
from a CDN) served by two routes left out of the OpenAPI document, which stays the API. Only the files
found in that folder when the module loads can be served (no path from the request reaches the file
system), and the page's Content-Security-Policy lets it load nothing but this server's files and the
object URL of the video the user drops.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES: dict[str, Path] = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}

# 'self' only: the page works offline and cannot be made to load scripts from elsewhere; blob: is the
# dropped video played in place.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_FILES["index.html"], headers=PAGE_HEADERS)


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    path = STATIC_FILES.get(name)
    if path is None:
        raise HTTPException(404, "Not Found")  # the handlers make it `not_found`, as any unknown path
    return FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})
