"""The built-in kinds and the ``spec`` each must have, as Backstage checks them.

A kind is known by its ``kind`` and ``apiVersion`` together: the catalog kinds
(Component, API, Resource, System, Domain, Group, User, Location) take
``backstage.io/v1alpha1`` or ``backstage.io/v1beta1``, a Template takes
``scaffolder.backstage.io/v1beta3``.  Any other pair is refused, as Backstage
refuses an entity no processor recognizes.  Each kind's ``spec`` is described by
a JSON schema; extra spec fields are allowed, as in Backstage.  A spec is first
checked with a validator compiled by ``fastjsonschema``; only a spec that fails
it goes through ``jsonschema``, which names every problem.

``kind_problems`` only reads the entity.
"""

from __future__ import annotations

import re
from typing import Any

import fastjsonschema
import jsonschema

from .problem import Problem

CATALOG_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")
TEMPLATE_VERSIONS = ("scaffolder.backstage.io/v1beta3",)

_TEXT = {"type": "string", "minLength": 1}
_TEXTS = {"type": "array", "items": _TEXT}


def _spec(required: list[str], **properties: Any) -> dict:
    return {"type": "object", "required": required, "properties": properties}


_PROFILE = {
    "type": "object",
    "properties": {
        name: {"type": "string"}
        for name in (
            "displayName",
            "email",
            "picture",
            "pronouns",
            "jobTitle",
            "startDateISO",
            "manager",
            "timezoneISO",
            "location",
            "directMessageURL",
        )
    },
}

_STEP = {
    "type": "object",
    "required": ["action"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "action": {"type": "string"},
        "input": {"type": "object"},
        "if": {"type": ["string", "boolean"]},
    },
}

#: kind (lower case) -> (accepted apiVersions, spec schema)
KINDS: dict[str, tuple[tuple[str, ...], dict]] = {
    "component": (
        CATALOG_VERSIONS,
        _spec(
            ["type", "lifecycle", "owner"],
            type=_TEXT,
            lifecycle=_TEXT,
            owner=_TEXT,
            system=_TEXT,
            subcomponentOf=_TEXT,
            providesApis=_TEXTS,
            consumesApis=_TEXTS,
            dependsOn=_TEXTS,
            dependencyOf=_TEXTS,
        ),
    ),
    "api": (
        CATALOG_VERSIONS,
        _spec(
            ["type", "lifecycle", "owner", "definition"],
            type=_TEXT,
            lifecycle=_TEXT,
            owner=_TEXT,
            definition=_TEXT,
            system=_TEXT,
        ),
    ),
    "resource": (
        CATALOG_VERSIONS,
        _spec(
            ["type", "owner"],
            type=_TEXT,
            owner=_TEXT,
            system=_TEXT,
            dependsOn=_TEXTS,
            dependencyOf=_TEXTS,
        ),
    ),
    "system": (
        CATALOG_VERSIONS,
        _spec(["owner"], owner=_TEXT, domain=_TEXT, type=_TEXT),
    ),
    "domain": (
        CATALOG_VERSIONS,
        _spec(["owner"], owner=_TEXT, subdomainOf=_TEXT, type=_TEXT),
    ),
    "group": (
        CATALOG_VERSIONS,
        _spec(
            ["type", "children"],
            type=_TEXT,
            profile=_PROFILE,
            parent=_TEXT,
            children=_TEXTS,
            members=_TEXTS,
        ),
    ),
    "user": (
        CATALOG_VERSIONS,
        _spec(["memberOf"], profile=_PROFILE, memberOf=_TEXTS),
    ),
    "location": (
        CATALOG_VERSIONS,
        _spec(
            [],
            type=_TEXT,
            target=_TEXT,
            targets=_TEXTS,
            presence={"enum": ["required", "optional"]},
        ),
    ),
    "template": (
        TEMPLATE_VERSIONS,
        _spec(
            ["type", "steps"],
            type=_TEXT,
            owner=_TEXT,
            parameters={"type": ["object", "array"]},
            steps={"type": "array", "items": _STEP},
            output={"type": "object"},
        ),
    ),
}

_VALIDATORS = {
    kind: jsonschema.Draft7Validator(schema) for kind, (_, schema) in KINDS.items()
}
_COMPILED = {
    kind: fastjsonschema.compile(schema) for kind, (_, schema) in KINDS.items()
}


def kind_problems(entity: dict) -> list[Problem]:
    """The problems of an entity's kind, apiVersion and spec."""
    kind = str(entity.get("kind", ""))
    known = KINDS.get(kind.lower())
    if (
        known is None
        or entity.get("apiVersion") not in known[0]
        or kind != _KIND_NAMES[kind.lower()]
    ):
        return [
            Problem(
                "kind",
                f"{kind} with apiVersion {entity.get('apiVersion')} is not a kind "
                f"this catalog knows; use one of {', '.join(_KIND_NAMES.values())} "
                f"(Template with {TEMPLATE_VERSIONS[0]}, the others with "
                f"{CATALOG_VERSIONS[0]})",
            )
        ]

    if "spec" not in entity:
        return [Problem("spec", f"is required for kind {kind}")]
    try:
        _COMPILED[kind.lower()](entity["spec"])
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    return [
        Problem(_field(error), _message(error))
        for error in sorted(
            _VALIDATORS[kind.lower()].iter_errors(entity["spec"]),
            key=lambda e: list(map(str, e.absolute_path)),
        )
    ]


_KIND_NAMES = {
    "component": "Component",
    "api": "API",
    "resource": "Resource",
    "system": "System",
    "domain": "Domain",
    "group": "Group",
    "user": "User",
    "location": "Location",
    "template": "Template",
}


def _field(error: jsonschema.ValidationError) -> str:
    path = ["spec", *map(str, error.absolute_path)]
    if error.validator == "required":
        missing = re.match(r"'(.+)' is a required property", error.message)
        if missing:
            path.append(missing.group(1))
    return ".".join(path)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "is required"
    if error.validator == "minLength":
        return "must not be empty"
    if error.validator == "type":
        expected = error.validator_value
        if expected == "array" and error.schema.get("items") == _TEXT:
            expected = "a list of strings"
        return f"must be {_article(expected)}, got {_shown(error.instance)}"
    if error.validator == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))}"
    return error.message


def _article(expected: Any) -> str:
    if isinstance(expected, list):
        return " or ".join(_article(e) for e in expected)
    if expected.startswith("a list"):
        return expected
    return ("an " if expected[0] in "aeio" else "a ") + expected


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
