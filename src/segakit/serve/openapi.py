"""The API's OpenAPI schema with this server's limits in it, and its documentation page served without a CDN.

FastAPI writes the schema from the request models, which know the types but not what this server will take:
its steps, images, size and concepts caps are set at start-up (``segakit serve --max-steps ...``). So
:func:`with_limits` adds them to the schema as JSON Schema keywords (``minimum``, ``maximum``, ``multipleOf``,
``maxItems``, ``enum``, ``pattern``, and ``if`` / ``then`` for a strength strip's one concept), the values the request checks in :mod:`segakit.serve.schema` refuse
outside of; a generated client or a fuzzer reading ``/openapi.json`` then knows what the server will refuse.
The checks themselves stay where they are (a request outside still gets the one-sentence 400).

``/docs`` is Swagger UI from the files of the ``swagger-ui-bundle`` package, served by this server at
``/docs/assets``: the page works on a machine without internet (FastAPI's own page loads Swagger UI from a CDN).
"""

from __future__ import annotations

import re
from pathlib import Path

from segakit.serve.config import Limits

ASSETS = "/docs/assets"
_KEY = "(scale|s|threshold|t|warmup|w|cooldown|c|weight|wt)=(-?[0-9]+(\\.[0-9]+)?|none)"
EDIT_SPEC = rf"^[+-]?[A-Za-z][^:]*(:{_KEY}(,{_KEY})*)?$"  # the CLI's edit strings: [+|-]CONCEPT[:KEY=VALUE,...]
MAX_SEED = 2**63 - 1


def _branch(prop: dict, kind: str) -> dict:
    """The part of a property's schema of JSON type ``kind`` (the non-null branch of an ``anyOf``), or the property."""
    for option in prop.get("anyOf", []):
        if option.get("type") == kind:
            return option
    return prop


def _set(props: dict, name: str, kind: str, **keywords) -> None:
    if name in props:
        _branch(props[name], kind).update(keywords)


def with_limits(schema: dict, limits: Limits, model: str, directions: list[str]) -> dict:
    """``schema`` (FastAPI's, changed in place and returned) with the server's limits on the request bodies."""
    bodies = schema.get("components", {}).get("schemas", {})
    gen = bodies.get("GenerateRequest", {}).get("properties", {})
    side = {"minimum": 8, "maximum": limits.max_side, "multipleOf": 8}
    _set(gen, "steps", "integer", minimum=1, maximum=limits.max_steps)
    _set(gen, "num_images", "integer", minimum=1, maximum=limits.max_images)
    _set(gen, "height", "integer", **side)
    _set(gen, "width", "integer", **side)
    _set(gen, "seed", "integer", minimum=0, maximum=MAX_SEED - limits.max_images)
    _set(gen, "guidance", "number", minimum=0)
    _set(gen, "eta", "number", minimum=0, maximum=1)
    _set(gen, "momentum_beta", "number", minimum=0, exclusiveMaximum=1)
    _set(gen, "edit_refresh", "integer", minimum=1)
    _set(gen, "guidance_refresh", "integer", minimum=1)
    _set(gen, "true_cfg", "number", minimum=1)
    _set(gen, "edits", "array", maxItems=limits.max_concepts)
    _set(gen, "sweep", "array", minItems=2, maxItems=limits.max_sweep)
    _set(gen, "model", "string", enum=[model])
    for name in ("loras", "embeddings"):  # files on the server are not taken over HTTP
        _set(gen, name, "array", maxItems=0)
    for name in ("library", "apply_guidance"):
        if name in gen:
            gen[name] = {
                "type": "null",
                "title": gen[name].get("title", name),
                "description": gen[name].get("description", ""),
            }
    if "prompt" in gen:
        gen["prompt"]["pattern"] = r"\S"  # a prompt with words (or edits; the sentence says so)
    names = "|".join(re.escape(d) for d in directions)
    if directions:
        _set(gen, "directions", "array", items={"type": "string", "pattern": rf"^({names})(:-?[0-9]+(\.[0-9]+)?)?$"})
    else:
        _set(gen, "directions", "array", maxItems=0)
    values: dict[str, int] = {}
    for d in directions:
        if "=" in d:
            values[d.split("=", 1)[0]] = values.get(d.split("=", 1)[0], 0) + 1
    fair = sorted(a for a, n in values.items() if n >= 2)  # what fair generation can balance: two values or more
    if fair:
        _set(gen, "fair", "string", pattern=rf"^({'|'.join(map(re.escape, fair))})$")
    _set(
        gen,
        "edits",
        "array",
        items={"anyOf": [{"type": "string", "pattern": EDIT_SPEC}, {"$ref": "#/components/schemas/EditObject"}]},
    )
    concept = bodies.get("EditObject", {}).get("properties", {})
    if "prompt" in concept:
        concept["prompt"]["pattern"] = r"\S"
    _set(concept, "threshold", "number", minimum=0, exclusiveMaximum=1)
    _set(concept, "warmup", "integer", minimum=0)
    _set(concept, "cooldown", "integer", minimum=1)
    # a strength strip varies the one concept it is given
    body = bodies.get("GenerateRequest", {})
    if "sweep" in gen:
        body["if"] = {"properties": {"sweep": {"type": "array"}}, "required": ["sweep"]}
        body["then"] = {"properties": {"edits": {"minItems": 1, "maxItems": 1}}, "required": ["edits"]}
    edit = bodies.get("EditRequest", {}).get("properties", {})
    _set(edit, "steps", "integer", minimum=1, maximum=limits.max_steps)
    _set(edit, "captions", "integer", minimum=1, maximum=10)
    _set(edit, "guidance", "number", minimum=1)
    _set(edit, "concepts", "array", maxItems=limits.max_concepts)
    _set(edit, "seed", "integer", minimum=0, maximum=MAX_SEED)
    for name in ("instruction",):
        if name in edit:
            edit[name]["pattern"] = r"\S"
    if "image" in edit:
        edit["image"].update(
            {"contentEncoding": "base64", "contentMediaType": "image/png", "examples": [_example_png()]}
        )
    if "instruction" in edit:
        edit["instruction"]["examples"] = ["give her glasses"]
    return schema


def _example_png() -> str:
    """A small grey 64 x 64 PNG as base64: an image the edit endpoint takes, for the schema's example."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def swagger_assets() -> Path | None:
    """The folder of Swagger UI's files from the ``swagger-ui-bundle`` package, or None when it is not installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    folder = Path(swagger_ui_bundle.swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def docs_page(title: str, openapi_url: str) -> str:
    """The ``/docs`` page: Swagger UI from this server's own ``/docs/assets`` (no CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - API", swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css", swagger_favicon_url=f"{ASSETS}/favicon-32x32.png").body.decode()  # fmt: skip
