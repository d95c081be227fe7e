"""Files the API answers with (CSV, PDF): saved by the browser under their name."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

# The OpenAPI description of a 200 that is a PDF.
PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
}


def attachment(body: bytes, *, media_type: str, filename: str) -> Response:
    """`body` as a download named `filename` (ASCII: ids and dates only)."""
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
