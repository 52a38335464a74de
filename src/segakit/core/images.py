"""Image files: PNGs that carry their generation parameters, written atomically; strips and grids."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from segakit.core.atomic import atomic_open
from segakit.core.errors import UserError

PARAMS_KEY = "segakit"


def encode_png(image: Image.Image, params: dict | None = None) -> bytes:
    """``image`` as PNG bytes, with ``params`` as JSON in a PNG text chunk."""
    info = PngImagePlugin.PngInfo()
    if params is not None:
        info.add_text(PARAMS_KEY, json.dumps(params, sort_keys=True))
        info.add_text("Software", f"segakit {params.get('segakit_version', '')}".strip())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image: Image.Image, path: str | Path, params: dict | None = None) -> Path:
    """Write ``image`` to ``path`` atomically, with ``params`` as JSON in a PNG text chunk."""
    data = encode_png(image, params)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def read_params(path: str | Path) -> dict:
    """The generation parameters stored in a segakit PNG."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Image {str(path)!r} does not exist.")
    return png_params(path.read_bytes(), str(path))


def png_params(data: bytes, name: str = "the image") -> dict:
    """The generation parameters stored in the bytes of a segakit PNG (``name`` is what messages call it)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            text = im.text.get(PARAMS_KEY) if hasattr(im, "text") else None  # type: ignore[attr-defined]
    except Exception:
        raise UserError(f"{name!r} is not a PNG image.") from None
    if not text:
        raise UserError(f"{name!r} carries no segakit parameters (it was not written by segakit generate).")
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"The segakit parameters in {name!r} are not valid JSON.") from None
    if not isinstance(params, dict):
        raise UserError(f"The segakit parameters in {name!r} are not a JSON object.")
    return params


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def grid(
    images: Sequence[Image.Image],
    cols: int,
    labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    scale: int = 1,
) -> Image.Image:
    """Images in a grid, each optionally labelled below; rows optionally labelled at the left."""
    if not images:
        raise UserError("No images to put in a grid.")
    w, h = images[0].size
    w, h = w * scale, h * scale
    rows = (len(images) + cols - 1) // cols
    font = _font(max(10, h // 8))
    label_h = (h // 6 + 6) if labels else 0
    left = max((int(font.getlength(r)) for r in row_labels), default=0) + 8 if row_labels else 0
    sheet = Image.new("RGB", (left + cols * w, rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x, y = left + c * w, r * (h + label_h)
        sheet.paste(im.convert("RGB").resize((w, h), Image.NEAREST), (x, y))
        if labels:
            text = labels[i]
            draw.text((x + (w - font.getlength(text)) / 2, y + h + 2), text, fill="black", font=font)
    for r, text in enumerate(row_labels or []):
        draw.text((4, r * (h + label_h) + h / 2 - 6), text, fill="black", font=font)
    return sheet
