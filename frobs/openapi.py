"""``GET /api/openapi.json``: the OpenAPI document of the whole HTTP surface.

The document is written by hand in ``openapi.yaml`` beside this module and served
as JSON; a test keeps it true to the routes the application really has.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from flask import Blueprint, jsonify

DOCUMENT = Path(__file__).with_name("openapi.yaml")


@cache
def openapi_document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def openapi_blueprint() -> Blueprint:
    blueprint = Blueprint("openapi", __name__)
    blueprint.add_url_rule(
        "/openapi.json", "document", lambda: jsonify(openapi_document())
    )
    return blueprint
