"""Entity refs: ``kind:namespace/name``, the identity of every catalog entity.

Parsing follows Backstage: the kind is the text before the first ``:`` when that
colon comes before the first ``/``, the namespace is the text up to the first
``/``, and the name is the rest.  Missing parts take the given defaults (the
namespace defaults to ``default``).  Refs compare case-insensitively: ``ref_key``
is the lower-cased form every index uses, while stored entities keep the spelling
they were given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

DEFAULT_NAMESPACE = "default"


class EntityRefError(ValueError):
    """A string that is not an entity ref."""


@dataclass(frozen=True)
class EntityRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}".lower()


def parse_entity_ref(
    ref: str,
    default_kind: str | None = None,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> EntityRef:
    if not isinstance(ref, str):
        raise EntityRefError(f"Entity reference must be a string, got {ref!r}")

    colon, slash = ref.find(":"), ref.find("/")
    kind = None
    rest = ref
    if colon != -1 and (slash == -1 or colon < slash):
        kind, rest = ref[:colon], ref[colon + 1 :]
    namespace = None
    slash = rest.find("/")
    if slash != -1:
        namespace, rest = rest[:slash], rest[slash + 1 :]

    if kind == "" or namespace == "" or rest == "":
        raise EntityRefError(
            f'Entity reference "{ref}" was not on the form '
            "[<kind>:][<namespace>/]<name>"
        )
    kind = kind or default_kind
    if not kind:
        raise EntityRefError(
            f'Entity reference "{ref}" had missing or empty kind (e.g. did not '
            'start with "component:" or similar)'
        )
    return EntityRef(kind, namespace or default_namespace, rest)


def stringify_entity_ref(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}:{namespace or DEFAULT_NAMESPACE}/{name}".lower()


def entity_ref_of(entity: Mapping) -> str:
    """The lower-cased ref of an entity whose envelope is already valid."""
    metadata = entity["metadata"]
    return stringify_entity_ref(
        entity["kind"], metadata.get("namespace"), metadata["name"]
    )
