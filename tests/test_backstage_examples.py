"""Backstage's own example entities, loaded through a provider into a real store.

The valid ones are served with a uid, an etag and exactly the relations Backstage
derives; the invalid ones are refused with messages naming the field and the
rule, and their siblings still land.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from frobs.catalog.file_store import FileStore
from frobs.catalog.mutation import DeferredEntity, FullMutation, Outcome
from frobs.catalog.provider import EntityProvider, EntityProviderConnection

EXAMPLES = Path(__file__).parent / "fixtures" / "backstage-examples"
INDEX = json.loads((EXAMPLES / "entities-index.json").read_text())
EXPECTED = json.loads((EXAMPLES / "expected-relations.json").read_text())
PLACEHOLDERS = {"api:default/spotify", "api:default/wayback-search"}


class ExampleFilesProvider(EntityProvider):
    """Reads the example YAML files as Backstage's file locations would.

    Each entity gets the two location annotations its file gives it, and, when
    ``resolve_placeholders`` is set, a ``$text`` definition is replaced by text,
    as Backstage's placeholder processor does before validation.
    """

    def __init__(self, resolve_placeholders: bool) -> None:
        self.resolve_placeholders = resolve_placeholders

    def get_provider_name(self) -> str:
        return "examples"

    def connect(self, connection: EntityProviderConnection) -> None:
        self.connection = connection

    def entities(self) -> list[DeferredEntity]:
        entities = []
        for entry in INDEX["entities"]:
            path = EXAMPLES / entry["file"]
            for document in yaml.safe_load_all(path.read_text()):
                if document is None or _ref(document) != entry["entity_ref"]:
                    continue
                location = f"url:file:{entry['file']}"
                annotations = document["metadata"].setdefault("annotations", {})
                annotations["backstage.io/managed-by-location"] = location
                annotations["backstage.io/managed-by-origin-location"] = location
                if self.resolve_placeholders:
                    _resolve_text(document.get("spec", {}))
                entities.append(DeferredEntity(document, "examples"))
        return entities

    def full_sync(self, cancelled=None):
        return self.connection.apply_mutation(FullMutation(self.entities()))


def _ref(document: dict) -> str:
    metadata = document["metadata"]
    namespace = metadata.get("namespace", "default")
    return f"{document['kind']}:{namespace}/{metadata['name']}".lower()


def _resolve_text(spec: dict) -> None:
    if isinstance(spec.get("definition"), dict) and "$text" in spec["definition"]:
        spec["definition"] = f"(text of {spec['definition']['$text']})"


def load(tmp_path, resolve_placeholders: bool):
    store = FileStore(tmp_path / "store")
    provider = ExampleFilesProvider(resolve_placeholders)
    provider.connect(EntityProviderConnection(store, provider.get_provider_name()))
    return store, provider.full_sync()


def test_every_example_entity_is_read():
    assert len(ExampleFilesProvider(False).entities()) == INDEX["counts"]["total"] == 38


def test_valid_examples_land_and_invalid_ones_are_refused_alone(tmp_path):
    store, result = load(tmp_path, resolve_placeholders=False)

    outcomes = {r.ref: r.outcome for r in result.results}
    for entry in INDEX["entities"]:
        expected = Outcome.ADDED if entry["valid_raw"] else Outcome.INVALID
        assert outcomes[entry["entity_ref"]] is expected, entry
    assert len(store.snapshot()) == 35


def test_refusals_name_the_field_and_the_rule(tmp_path):
    _, result = load(tmp_path, resolve_placeholders=False)
    messages = {r.ref: r.message for r in result.of(Outcome.INVALID)}

    invalid = messages["component:default/invalid component"]
    assert invalid.startswith("component:default/invalid component: ")
    assert "metadata.name: is not valid" in invalid
    assert "sequences of [a-zA-Z0-9] separated by any of [-_.]" in invalid
    assert "metadata.tags.1: is not valid" in invalid and "'go 1.15.3'" in invalid
    for ref in PLACEHOLDERS:
        assert re.search(
            r"spec\.definition: must be a string, got \{'\$text'", messages[ref]
        )


def test_valid_examples_are_served_with_uid_etag_and_the_relations_backstage_derives(
    tmp_path,
):
    store, result = load(tmp_path, resolve_placeholders=True)
    assert [r.ref for r in result.of(Outcome.INVALID)] == [
        "component:default/invalid component"
    ]

    snapshot = store.snapshot()
    served = {r.ref: snapshot.entity(r) for r in snapshot.records()}
    assert set(EXPECTED["relations_by_entity"]) <= set(served)
    assert len(served) == 37
    for ref, entity in served.items():
        # Locations and Templates get no relations from spec, and are not listed.
        expected = EXPECTED["relations_by_entity"].get(ref, [])
        assert re.fullmatch(r"[0-9a-f-]{36}", entity["metadata"]["uid"]), ref
        assert re.fullmatch(r"[0-9a-f]{40}", entity["metadata"]["etag"]), ref
        assert entity["relations"] == expected, ref
    uids = {e["metadata"]["uid"] for e in served.values()}
    assert len(uids) == len(served)


def test_loading_the_same_examples_again_changes_nothing(tmp_path):
    store, _ = load(tmp_path, resolve_placeholders=True)
    before = {r.ref: store.snapshot().entity(r) for r in store.snapshot().records()}

    provider = ExampleFilesProvider(resolve_placeholders=True)
    provider.connect(EntityProviderConnection(store, "examples"))
    again = provider.full_sync()

    assert {r.outcome for r in again.results} == {Outcome.UNCHANGED, Outcome.INVALID}
    after = {r.ref: store.snapshot().entity(r) for r in store.snapshot().records()}
    assert after == before


@pytest.mark.parametrize("ref", sorted(EXPECTED["dangling_target_refs"]))
def test_relations_to_missing_entities_are_kept(tmp_path, ref):
    store, _ = load(tmp_path, resolve_placeholders=True)
    snapshot = store.snapshot()
    assert snapshot.get(ref) is None
    targets = {
        relation["targetRef"]
        for record in snapshot.records()
        for relation in snapshot.entity(record)["relations"]
    }
    assert ref in targets
