"""Backstage's own ``@backstage/catalog-client`` against the real service.

The pinned client is installed with npm once into a cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache``, then ``frobs-tests/``), so reruns do not
reach the registry.  The service runs under gunicorn (2 workers, loopback only)
on a store loaded with Backstage's example entities through an
``EntityProviderConnection``, as ``test_backstage_examples`` loads them.  A Node
script written by the test drives the real ``CatalogClient`` (its default fetch,
``cross-fetch``) against ``http://127.0.0.1:<port>/api/catalog`` and prints what
each call returned as JSON; each answer is checked against what the fixture
files say it must be.

What is pinned (SPEC section 7, "compatible enough that the real
@backstage/catalog-client package works"): ``getEntities`` with filters (an
array value, ``CATALOG_FILTER_EXISTS``, several filter sets), ``fields``,
``order`` and limit/offset paging; ``queryEntities`` followed through
``nextCursor`` to the end, with ``orderFields``, ``fullTextFilter`` and
``fields``; ``getEntitiesByRefs`` with ``undefined`` for an unknown ref;
``getEntityByRef`` found and not found; ``getEntityFacets``; and an error
envelope the client turns into a ``ResponseError``.  Without node and npm the
tests are skipped; an npm install that fails fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from gunicorn_service import (
    catalog_answers,
    free_port,
    read_log,
    spawn_gunicorn,
    stop_process,
)
from test_backstage_examples import EXPECTED, ExampleFilesProvider

from frobs.catalog.file_store import FileStore
from frobs.catalog.provider import EntityProviderConnection

CLIENT_PACKAGE = "@backstage/catalog-client"
CLIENT_VERSION = "1.16.4"
WORKERS = 2
START_TIMEOUT = 30.0
NPM_TIMEOUT = 300
NODE_TIMEOUT = 60
UNDEFINED = "<undefined>"
INVALID_EXAMPLE = "component:default/invalid component"


# The client, installed once


def node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run @backstage/catalog-client")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"@backstage/catalog-client needs node 18 or newer, not {version}")
    return node, npm


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frobs-tests" / f"catalog-client-{CLIENT_VERSION}"


def installed_version(folder: Path) -> str | None:
    manifest = folder / "node_modules" / CLIENT_PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_client(npm: str) -> Path:
    """``node_modules`` holding the pinned client, installed on first use.

    The install goes to a fresh folder that replaces the cached one only once
    npm succeeded, so an interrupted install is never taken for a good one.
    """
    folder = cache_folder()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if installed_version(folder) == CLIENT_VERSION:
            return folder / "node_modules"
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=folder.parent))
        (staging / "package.json").write_text('{"private": true}\n')
        result = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--omit=dev",
                f"{CLIENT_PACKAGE}@{CLIENT_VERSION}",
            ],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
        if result.returncode != 0 or installed_version(staging) != CLIENT_VERSION:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(
                f"npm install {CLIENT_PACKAGE}@{CLIENT_VERSION} failed "
                f"({result.returncode}):\n{result.stdout[-2000:]}\n"
                f"{result.stderr[-2000:]}"
            )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return folder / "node_modules"


# The service, on Backstage's example entities


def load_examples(store_path: Path) -> None:
    provider = ExampleFilesProvider(resolve_placeholders=True)
    provider.connect(EntityProviderConnection(FileStore(store_path), "examples"))
    provider.full_sync()


def start_gunicorn(folder: Path) -> tuple[subprocess.Popen, str, Path]:
    config = {
        "events": {"http": {"topics": ["frobs"]}},
        "catalog": {"store": {"type": "file", "path": str(folder / "store")}},
    }
    config_path = folder / "app-config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = folder / "gunicorn.log"
    process = spawn_gunicorn(config_path, port, log_path, WORKERS)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        answering = catalog_answers(base_url, timeout=5)
        booted = re.findall(r"Booting worker", read_log(log_path))
        if answering and len(booted) >= WORKERS:
            return process, base_url, log_path
        time.sleep(0.2)
    stop_process(process)
    pytest.fail(f"gunicorn did not start:\n{log_path.read_text(errors='replace')}")


# The client's calls


SCRIPT = """\
'use strict';
const { CatalogClient, CATALOG_FILTER_EXISTS } = require('@backstage/catalog-client');

const baseUrl = process.argv[2];
const client = new CatalogClient({
  discoveryApi: { getBaseUrl: async () => baseUrl },
});
const UNDEFINED = '<undefined>';
const shown = value => (value === undefined ? UNDEFINED : value);

async function queryToTheEnd(first, more) {
  const pages = [];
  let page = await client.queryEntities(first);
  pages.push(page);
  while (page.pageInfo.nextCursor) {
    page = await client.queryEntities({ ...more, cursor: page.pageInfo.nextCursor });
    pages.push(page);
  }
  return pages;
}

async function main() {
  const out = {};

  out.everything = (await client.getEntities()).items;

  out.servicesAndWebsites = (await client.getEntities({
    filter: { kind: 'Component', 'spec.type': ['service', 'website'] },
    fields: ['kind', 'metadata.name', 'spec.type'],
  })).items;

  out.usersAndTypedGroups = (await client.getEntities({
    filter: [{ kind: 'User' }, { kind: 'Group', 'spec.type': CATALOG_FILTER_EXISTS }],
    fields: ['kind', 'metadata.name'],
    order: [{ field: 'metadata.name', order: 'desc' }],
  })).items;

  out.userPages = [];
  for (let offset = 0; ; offset += 3) {
    const page = (await client.getEntities({
      filter: { kind: 'user' },
      fields: ['metadata.namespace', 'metadata.name'],
      order: { field: 'metadata.name', order: 'asc' },
      limit: 3,
      offset,
    })).items;
    out.userPages.push(page);
    if (page.length < 3 || out.userPages.length > 20) break;
  }

  out.componentPages = await queryToTheEnd(
    {
      filter: { kind: 'component' },
      orderFields: { field: 'metadata.name', order: 'asc' },
      fields: ['metadata.name'],
      limit: 2,
    },
    { fields: ['metadata.name'], limit: 2 },
  );

  out.artistPages = await queryToTheEnd(
    {
      fullTextFilter: {
        term: '  ARTIST ',
        fields: ['metadata.name', 'metadata.title'],
      },
      orderFields: [{ field: 'metadata.name', order: 'desc' }],
      fields: ['kind', 'metadata.name'],
      limit: 1,
    },
    { fields: ['kind', 'metadata.name'], limit: 1 },
  );

  out.byRefs = (await client.getEntitiesByRefs({
    entityRefs: [
      'group:default/team-a',
      'Component:Default/Artist-Lookup',
      'component:default/does-not-exist',
      'user:development/guest',
      'team-a',
    ],
    fields: ['kind', 'metadata.namespace', 'metadata.name'],
  })).items.map(shown);

  out.byRefsFiltered = (await client.getEntitiesByRefs({
    entityRefs: ['group:default/team-a', 'component:default/artist-lookup'],
    filter: { kind: 'component' },
    fields: ['metadata.name'],
  })).items.map(shown);

  out.byRef = {
    found: shown(await client.getEntityByRef('Component:Default/Artist-Lookup')),
    otherNamespace: shown(await client.getEntityByRef('user:development/guest')),
    unknown: shown(await client.getEntityByRef('component:default/does-not-exist')),
  };

  out.facets = await client.getEntityFacets({
    facets: ['kind', 'spec.type', 'metadata.tags', 'relations.ownedBy'],
    filter: { kind: ['Component', 'API', 'System'] },
  });

  try {
    await client.getEntities({
      order: [{ field: 'metadata.name', order: 'sideways' }],
    });
    out.badOrder = 'no error';
  } catch (error) {
    out.badOrder = {
      name: error.name,
      status: error.response && error.response.status,
      envelope: error.body,
      causeName: error.cause && error.cause.name,
    };
  }

  process.stdout.write(JSON.stringify(out));
}

main().catch(error => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    """What each call of the real client returned, from the running service."""
    node, npm = node_tools()
    node_modules = install_client(npm)
    folder = tmp_path_factory.mktemp("catalog-client")
    load_examples(folder / "store")
    script = folder / "calls.cjs"
    script.write_text(SCRIPT)

    process, base_url, log_path = start_gunicorn(folder)
    try:
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        result = subprocess.run(
            [node, str(script), f"{base_url}/api/catalog"],
            capture_output=True,
            text=True,
            env=env,
            timeout=NODE_TIMEOUT,
        )
    finally:
        stop_process(process)
    assert result.returncode == 0, (
        f"the client script failed:\n{result.stderr}\n"
        f"--- gunicorn log ---\n{log_path.read_text(errors='replace')[-4000:]}"
    )
    return json.loads(result.stdout)


# What the fixture files say


def ref_of(entity: dict) -> str:
    metadata = entity["metadata"]
    namespace = metadata.get("namespace", "default")
    return f"{entity['kind']}:{namespace}/{metadata['name']}".lower()


def examples() -> dict[str, dict]:
    """Every example entity the store serves, by ref, as its file writes it."""
    entities = [d.entity for d in ExampleFilesProvider(True).entities()]
    served = {ref_of(e): e for e in entities if ref_of(e) != INVALID_EXAMPLE}
    assert len(served) == 37
    return served


def field(entity: dict, path: str):
    node = entity
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def kind_is(entity: dict, *kinds: str) -> bool:
    return entity["kind"].lower() in {k.lower() for k in kinds}


# The answers


def test_get_entities_lists_every_example(answers):
    served = {ref_of(e) for e in answers["everything"]}
    assert served == set(examples())
    assert all(
        e["metadata"]["uid"] and e["metadata"]["etag"] for e in answers["everything"]
    )


def test_get_entities_with_an_array_filter_value_and_fields(answers):
    expected = [
        {
            "kind": e["kind"],
            "metadata": {"name": e["metadata"]["name"]},
            "spec": {"type": e["spec"]["type"]},
        }
        for ref, e in sorted(examples().items())
        if kind_is(e, "component") and field(e, "spec.type") in ("service", "website")
    ]
    assert answers["servicesAndWebsites"] == expected
    assert {e["spec"]["type"] for e in expected} == {"service", "website"}


def test_get_entities_with_filter_sets_an_exists_filter_and_an_order(answers):
    expected = [
        e
        for e in examples().values()
        if kind_is(e, "user") or (kind_is(e, "group") and field(e, "spec.type"))
    ]
    names = [e["metadata"]["name"] for e in answers["usersAndTypedGroups"]]
    assert names == sorted((e["metadata"]["name"] for e in expected), reverse=True)
    assert Counter(e["kind"] for e in answers["usersAndTypedGroups"]) == Counter(
        e["kind"] for e in expected
    )
    assert all(set(e) == {"kind", "metadata"} for e in answers["usersAndTypedGroups"])


def test_get_entities_pages_with_limit_and_offset(answers):
    users = [e for e in examples().values() if kind_is(e, "user")]
    pages = answers["userPages"]
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    seen = [
        (e["metadata"]["namespace"], e["metadata"]["name"]) for p in pages for e in p
    ]
    assert len(seen) == len(set(seen))
    assert set(seen) == {
        (e["metadata"].get("namespace", "default"), e["metadata"]["name"])
        for e in users
    }
    assert [name for _, name in seen] == sorted(e["metadata"]["name"] for e in users)


def test_query_entities_follows_next_cursor_to_the_end(answers):
    components = [e for e in examples().values() if kind_is(e, "component")]
    pages = answers["componentPages"]
    assert [len(p["items"]) for p in pages] == [2, 2, 2, 1]
    assert all(p["totalItems"] == len(components) for p in pages)
    assert "prevCursor" not in pages[0]["pageInfo"]
    assert all("prevCursor" in p["pageInfo"] for p in pages[1:])
    assert "nextCursor" not in pages[-1]["pageInfo"]
    names = [e["metadata"]["name"] for p in pages for e in p["items"]]
    assert names == sorted(e["metadata"]["name"] for e in components)
    assert all(
        e == {"metadata": {"name": e["metadata"]["name"]}}
        for p in pages
        for e in p["items"]
    )


def test_query_entities_with_a_full_text_filter_and_a_descending_order(answers):
    matching = [
        e
        for e in examples().values()
        if any(
            "artist" in (field(e, f) or "").lower()
            for f in ("metadata.name", "metadata.title")
        )
    ]
    pages = answers["artistPages"]
    assert len(matching) >= 4
    assert [len(p["items"]) for p in pages] == [1] * len(matching)
    assert all(p["totalItems"] == len(matching) for p in pages)
    found = [(e["kind"], e["metadata"]["name"]) for p in pages for e in p["items"]]
    expected = sorted(
        ((e["kind"], e["metadata"]["name"]) for e in matching),
        key=lambda kind_name: kind_name[1],
        reverse=True,
    )
    assert found == expected


def test_get_entities_by_refs_answers_in_order_with_undefined_for_unknown_refs(
    answers,
):
    assert answers["byRefs"] == [
        {"kind": "Group", "metadata": {"namespace": "default", "name": "team-a"}},
        {
            "kind": "Component",
            "metadata": {"namespace": "default", "name": "artist-lookup"},
        },
        UNDEFINED,
        {"kind": "User", "metadata": {"namespace": "development", "name": "guest"}},
        UNDEFINED,
    ]
    assert answers["byRefsFiltered"] == [
        UNDEFINED,
        {"metadata": {"name": "artist-lookup"}},
    ]


def test_get_entity_by_ref_serves_the_example_with_uid_etag_and_relations(answers):
    served = answers["byRef"]["found"]
    written = examples()["component:default/artist-lookup"]
    assert served["apiVersion"] == written["apiVersion"]
    assert served["kind"] == "Component"
    assert served["metadata"]["name"] == "artist-lookup"
    assert served["metadata"]["namespace"] == "default"
    assert re.fullmatch(r"[0-9a-f-]{36}", served["metadata"]["uid"])
    assert re.fullmatch(r"[0-9a-f]{40}", served["metadata"]["etag"])
    assert served["spec"] == written["spec"]
    for key, value in written["metadata"].items():
        assert served["metadata"][key] == value, key
    expected = EXPECTED["relations_by_entity"]["component:default/artist-lookup"]
    assert served["relations"] == expected

    other = answers["byRef"]["otherNamespace"]
    assert (other["kind"], other["metadata"]["namespace"]) == ("User", "development")


def test_get_entity_by_ref_gives_undefined_for_an_unknown_ref(answers):
    assert answers["byRef"]["unknown"] == UNDEFINED


def test_get_entity_facets_counts_values_as_written(answers):
    chosen = [
        e for e in examples().values() if kind_is(e, "component", "api", "system")
    ]

    def counts(values_of) -> list[dict]:
        counted = Counter(v for e in chosen for v in set(values_of(e)))
        return [{"value": v, "count": counted[v]} for v in sorted(counted)]

    def owners(entity: dict) -> list[str]:
        relations = EXPECTED["relations_by_entity"].get(ref_of(entity), [])
        return [r["targetRef"] for r in relations if r["type"] == "ownedBy"]

    facets = answers["facets"]["facets"]
    assert facets["kind"] == counts(lambda e: [e["kind"]])
    assert facets["spec.type"] == counts(
        lambda e: [field(e, "spec.type")] if field(e, "spec.type") else []
    )
    assert facets["metadata.tags"] == counts(lambda e: field(e, "metadata.tags") or [])
    assert facets["relations.ownedBy"] == counts(owners)
    assert {f["value"] for f in facets["kind"]} == {"Component", "API", "System"}


def test_an_error_envelope_becomes_the_clients_response_error(answers):
    error = answers["badOrder"]
    assert error["name"] == "ResponseError"
    assert error["status"] == 400
    assert error["causeName"] == "InputError"
    assert error["envelope"]["error"]["name"] == "InputError"
    assert "Invalid order parameter" in error["envelope"]["error"]["message"]
    assert error["envelope"]["response"] == {"statusCode": 400}
