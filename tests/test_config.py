"""Configuration loading: files, overrides, substitution and the errors it reports."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from frobs.config import ConfigError, load_config, masked
from frobs.durations import parse_duration

REPO = Path(__file__).resolve().parent.parent


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_default_files_are_the_embedded_config_and_its_local_override(tmp_path):
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "app-config.yaml", "events:\n  http:\n    topics: [a]\n")
    write(
        tmp_path / "config",
        "app-config.local.yaml",
        "events:\n  http:\n    maxBodyBytes: 10\n",
    )

    config = load_config({}, tmp_path)

    assert config.get("events.http.topics") == ["a"]
    assert config.get("events.http.maxBodyBytes") == 10


def test_later_files_override_earlier_ones_key_by_key(tmp_path):
    first = write(
        tmp_path,
        "a.yaml",
        "events:\n  http:\n    topics: [a, b]\n    maxBodyBytes: 5\n",
    )
    second = write(tmp_path, "b.yaml", "events:\n  http:\n    topics: [c]\n")

    config = load_config({"APP_CONFIG": f"{first}:{second}"}, tmp_path)

    assert config.get("events.http.topics") == ["c"]
    assert config.get("events.http.maxBodyBytes") == 5
    assert config.source_of("events.http.topics") == Path(second)
    assert config.source_of("events.http.maxBodyBytes") == Path(first)


def test_app_config_replaces_the_embedded_defaults(tmp_path):
    only = write(tmp_path, "only.yaml", "events:\n  http:\n    topics: [x]\n")
    config = load_config({"APP_CONFIG": only}, REPO)
    assert config.get("catalog.providers") is None


SUBSTITUTIONS = {
    "a set variable": ("${SECRET}", {"SECRET": "s3"}, "s3"),
    "a default when unset": ("${SECRET:-fallback}", {}, "fallback"),
    "the variable wins over the default": ("${SECRET:-fallback}", {"SECRET": "v"}, "v"),
    "an empty default": ("${SECRET:-}", {}, ""),
    "inside a longer string": ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
    "an escaped literal": ("$${NOT_A_VARIABLE}", {}, "${NOT_A_VARIABLE}"),
}


@pytest.mark.parametrize(
    "value, environ, expected", SUBSTITUTIONS.values(), ids=SUBSTITUTIONS.keys()
)
def test_substitution(tmp_path, value, environ, expected):
    path = write(
        tmp_path,
        "c.yaml",
        f"events:\n  modules:\n    github:\n      webhookSecret: '{value}'\n",
    )
    config = load_config({"APP_CONFIG": path, **environ}, tmp_path)
    assert config.get("events.modules.github.webhookSecret") == expected


def test_a_substituted_number_becomes_an_integer(tmp_path):
    path = write(
        tmp_path, "c.yaml", "events:\n  http:\n    maxBodyBytes: ${LIMIT:-1024}\n"
    )
    assert (
        load_config({"APP_CONFIG": path}, tmp_path).get("events.http.maxBodyBytes")
        == 1024
    )


ERRORS = {
    "a missing variable names the key, the file and the variable": (
        "events:\n  modules:\n    github:\n      webhookSecret: ${GH_SECRET}\n",
        ["events.modules.github.webhookSecret", "GH_SECRET", "c.yaml"],
    ),
    "an unknown key": (
        "events:\n  htp:\n    topics: [a]\n",
        ["unknown key 'events.htp'", "c.yaml"],
    ),
    "a value of the wrong type": (
        "events:\n  http:\n    maxBodyBytes: lots\n",
        ["events.http.maxBodyBytes", "integer", "c.yaml"],
    ),
    "a topic name with a slash": (
        "events:\n  http:\n    topics: ['a/b']\n",
        ["events.http.topics.0", "not a valid name"],
    ),
    "a topic name with a trailing newline": (
        'events:\n  http:\n    topics: ["a\\n"]\n',
        ["events.http.topics.0", "not a valid name"],
    ),
    "a provider env name with a space": (
        "catalog:\n  providers:\n    frobs:\n      'my env': {}\n",
        ["catalog.providers.frobs", "not a valid name"],
    ),
    "an unknown provider setting": (
        "catalog:\n  providers:\n    frobs:\n      dev:\n        dataURL: x\n",
        ["unknown key 'catalog.providers.frobs.dev.dataURL'"],
    ),
    "a bad duration": (
        "catalog:\n  providers:\n    frobs:\n      dev:\n        schedule:\n"
        "          frequency: often\n",
        ["catalog.providers.frobs.dev.schedule.frequency", "ISO 8601"],
    ),
    "a bad cron": (
        "catalog:\n  providers:\n    frobs:\n      dev:\n        schedule:\n"
        "          frequency: {cron: 'not cron'}\n",
        ["not a cron expression"],
    ),
    "a signature for a topic without an endpoint": (
        "events:\n  http:\n    topics: [a]\n    signatures:\n      b:\n"
        "        type: standard-webhooks\n        secrets: [x]\n",
        ["events.http.signatures.b", "not in events.http.topics"],
    ),
    "an hmac signature without its header": (
        "events:\n  http:\n    topics: [a]\n    signatures:\n      a:\n"
        "        type: hmac\n        secrets: [x]\n",
        ["events.http.signatures.a", "needs the header"],
    ),
    "a signature whose secrets are all empty": (
        "events:\n  http:\n    topics: [a]\n    signatures:\n      a:\n"
        "        type: hmac\n        header: x-sig\n        secrets: ['${S:-}']\n",
        ["events.http.signatures.a.secrets", "every secret is empty"],
    ),
    "an unknown signature type": (
        "events:\n  http:\n    topics: [a]\n    signatures:\n      a:\n"
        "        type: magic\n        secrets: [x]\n",
        ["events.http.signatures.a.type"],
    ),
    "an unknown hmac algorithm": (
        "events:\n  http:\n    topics: [a]\n    signatures:\n      a:\n"
        "        type: hmac\n        header: x\n        algorithm: md5\n"
        "        secrets: [x]\n",
        ["events.http.signatures.a.algorithm"],
    ),
    "bad YAML": ("events: [unclosed\n", ["not valid YAML", "c.yaml"]),
    "a top level that is a list": ("- a\n- b\n", ["top level must be a mapping"]),
    "a store type that does not exist": (
        "catalog:\n  store:\n    type: s3\n",
        ["catalog.store.type"],
    ),
}


@pytest.mark.parametrize("text, fragments", ERRORS.values(), ids=ERRORS.keys())
def test_config_error(tmp_path, text, fragments):
    path = write(tmp_path, "c.yaml", text)
    with pytest.raises(ConfigError) as raised:
        load_config({"APP_CONFIG": path}, tmp_path)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "events:\n  htp: 1\n  http:\n    maxBodyBytes: lots\n"
        "catalog:\n  store:\n    path: ${NOPE}\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config({"APP_CONFIG": path}, tmp_path)

    problems = raised.value.problems
    assert len(problems) == 3, problems
    assert "catalog.store.path: environment variable NOPE is not set" in problems[0]
    assert "unknown key 'events.htp'" in str(raised.value)
    assert "events.http.maxBodyBytes" in str(raised.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found"):
        load_config({"APP_CONFIG": str(tmp_path / "nowhere.yaml")}, tmp_path)


def test_the_embedded_config_loads(tmp_path):
    config = load_config({}, REPO)
    assert config.get("events.http.topics") == ["frobs"]
    assert "sample" in config.get("catalog.providers.frobs")


DURATIONS = {
    "{minutes: 30}": ({"minutes": 30}, timedelta(minutes=30)),
    "PT30M": ("PT30M", timedelta(minutes=30)),
    "P1DT2H": ("P1DT2H", timedelta(days=1, hours=2)),
    "PT1.5S": ("PT1.5S", timedelta(seconds=1.5)),
    "{hours: 1, seconds: 5}": (
        {"hours": 1, "seconds": 5},
        timedelta(hours=1, seconds=5),
    ),
    "{milliseconds: 250}": ({"milliseconds": 250}, timedelta(milliseconds=250)),
}


@pytest.mark.parametrize("value, expected", DURATIONS.values(), ids=DURATIONS.keys())
def test_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "P",
        "PT",
        "30M",
        "1h",
        {},
        {"mins": 3},
        {"minutes": "3"},
        {"minutes": -1},
        30,
        None,
    ],
)
def test_bad_duration(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_gunicorn_stops_before_starting_workers_naming_each_problem(tmp_path):
    import subprocess
    import sys

    path = write(
        tmp_path, "bad.yaml", "events:\n  htp: 1\n  http:\n    maxBodyBytes: x\n"
    )
    finished = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:app", "--bind", "127.0.0.1:0"],
        cwd=REPO,
        env={**os.environ, "APP_CONFIG": path},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode != 0
    assert f"{path}: unknown key 'events.htp'" in finished.stderr
    assert f"{path}: events.http.maxBodyBytes" in finished.stderr
    assert (
        "Traceback" not in finished.stderr and "Booting worker" not in finished.stderr
    )


@pytest.mark.parametrize(
    "url",
    ["file:../outside/{id}.json", "file:///etc/{id}", "file:%2e%2e/x/{id}.json"],
)
def test_a_file_url_leaving_its_folder_stops_startup(tmp_path, url):
    from frobs.app import create_app

    path = write(
        tmp_path,
        "c.yaml",
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        f"  providers:\n    frobs:\n      dev:\n        itemUrl: '{url}'\n",
    )
    with pytest.raises(ConfigError, match="catalog.providers.frobs.dev.*outside"):
        create_app(load_config({"APP_CONFIG": path}, tmp_path), False)


@pytest.mark.parametrize(
    "settings, problem",
    [
        (
            {"itemUrl": "ftp://frobs.example.com/{id}"},
            "itemUrl: 'ftp://frobs.example.com/{id}': only http, https and file",
        ),
        (
            {"itemUrl": "https:///items/{id}"},
            "itemUrl: 'https:///items/{id}' names no host",
        ),
        (
            {"itemUrl": "https://frobs.example.com:x/{id}"},
            "itemUrl: 'https://frobs.example.com:x/{id}' has a port that is no port",
        ),
        (
            {"itemUrl": "https://frobs example.com/{id}"},
            "itemUrl: 'https://frobs example.com/{id}': 'frobs example.com' is no "
            "host name",
        ),
        (
            {"itemUrl": "https://[::1/{id}"},
            "itemUrl: 'https://[::1/{id}' is no URL (Invalid IPv6 URL)",
        ),
        (
            {"itemUrl": "https://frobs.example.com/{name}"},
            "itemUrl: 'https://frobs.example.com/{name}': {name} is no placeholder "
            "here; itemUrl may hold {env}, {id}",
        ),
        (
            {"itemUrl": "https://frobs.example.com/items"},
            "itemUrl: 'https://frobs.example.com/items' has no {id} where",
        ),
        (
            {"itemUrl": "https://frobs.example.com/items#{id}"},
            "itemUrl: 'https://frobs.example.com/items#{id}' has no {id} where",
        ),
        (
            {"itemUrl": "https://{id}@frobs.example.com/items"},
            "itemUrl: 'https://{id}@frobs.example.com/items' has no {id} where",
        ),
        (
            {"previousStateUrl": "https://frobs.example.com/previous"},
            "previousStateUrl: 'https://frobs.example.com/previous' has no {id}",
        ),
        (
            {"dataUrl": "https://frobs.example.com/{id}"},
            "dataUrl: 'https://frobs.example.com/{id}': {id} is no placeholder here; "
            "dataUrl may hold {env}",
        ),
        (
            {"itemUrl": "https://elsewhere.example.org/{id}", "allow": True},
            "itemUrl: elsewhere.example.org is not an allowed host",
        ),
    ],
    ids=[
        "ftp",
        "no host",
        "bad port",
        "space in host",
        "unclosed bracket",
        "unknown placeholder",
        "item without id",
        "id in the fragment only",
        "id in the user name only",
        "previous state without id",
        "id in data url",
        "host not allowed",
    ],
)
def test_a_url_template_that_cannot_be_read_stops_startup(tmp_path, settings, problem):
    from frobs.app import create_app

    allow = settings.pop("allow", False)
    urls = "".join(f"        {name}: '{url}'\n" for name, url in settings.items())
    text = (
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        f"  providers:\n    frobs:\n      dev:\n{urls}"
    )
    if allow:
        text += "backend:\n  reading:\n    allow:\n      - host: '*.example.com'\n"
    path = write(tmp_path, "c.yaml", text)
    with pytest.raises(ConfigError) as raised:
        create_app(load_config({"APP_CONFIG": path}, tmp_path), False)
    # One line, for the setting given, even when another is made of it.
    (line,) = raised.value.problems
    assert line.startswith(f"{path}: catalog.providers.frobs.dev.{problem}"), line


def test_a_url_problem_names_the_file_that_sets_that_url(tmp_path):
    from frobs.app import create_app

    base = write(
        tmp_path,
        "base.yaml",
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "  providers:\n    frobs:\n      prod:\n"
        "        dataUrl: 'https://frobs.example.com/data'\n",
    )
    override = write(
        tmp_path,
        "over.yaml",
        "catalog:\n  providers:\n    frobs:\n      prod:\n"
        "        itemUrl: 'ftp://frobs.example.com/{id}'\n",
    )
    config = load_config({"APP_CONFIG": f"{base}:{override}"}, tmp_path)
    with pytest.raises(ConfigError) as raised:
        create_app(config, False)
    assert [p.split(": ")[0] for p in raised.value.problems] == [override]


def test_url_templates_that_can_be_read_start(tmp_path):
    from frobs.app import create_app

    path = write(
        tmp_path,
        "c.yaml",
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "  providers:\n    frobs:\n"
        "      dev:\n        dataUrl: 'file:frobs-{env}.json'\n"
        "        itemUrl: 'file:items/{env}/{id}.json'\n"
        "        previousStateUrl: '{itemUrl}.previous'\n"
        "      prod:\n        itemUrl: 'https://frobs-{env}.example.com/items/{id}'\n"
        "        previousStateUrl: 'https://frobs.example.com/{env}/{id}/before'\n",
    )
    create_app(load_config({"APP_CONFIG": path}, tmp_path), False)


def test_substituted_guard_settings_become_a_number_and_a_boolean(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "catalog:\n  providers:\n    frobs:\n      dev:\n"
        "        maxDeletionRatio: ${RATIO:-0.25}\n"
        "        allowEmptySource: ${EMPTY:-true}\n",
    )
    settings = load_config({"APP_CONFIG": path}, tmp_path).get("catalog.providers")
    assert settings["frobs"]["dev"] == {
        "maxDeletionRatio": 0.25,
        "allowEmptySource": True,
    }


def test_a_standard_webhooks_secret_that_is_not_base64_stops_startup(tmp_path):
    from frobs.app import create_app

    path = write(
        tmp_path,
        "c.yaml",
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "events:\n  http:\n    topics: [a]\n    signatures:\n      a:\n"
        "        type: standard-webhooks\n        secrets: ['whsec_not base64!']\n",
    )
    with pytest.raises(ConfigError, match="events.http.signatures.a.*base64"):
        create_app(load_config({"APP_CONFIG": path}, tmp_path), False)


def test_schema_and_duration_problems_are_reported_together(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "events:\n  htp: 1\n"
        "catalog:\n  providers:\n    frobs:\n      dev:\n        schedule:\n"
        "          frequency: often\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config({"APP_CONFIG": path}, tmp_path)
    assert "unknown key 'events.htp'" in str(raised.value)
    assert "schedule.frequency" in str(raised.value)


# A configuration fragment, and how ``check-config`` shows it.
MASKED = {
    "a set secret is masked": (
        {"events": {"modules": {"github": {"webhookSecret": "hush"}}}},
        {"events": {"modules": {"github": {"webhookSecret": "****"}}}},
    ),
    "an unset optional secret is shown empty": (
        {"events": {"modules": {"github": {"webhookSecret": ""}}}},
        {"events": {"modules": {"github": {"webhookSecret": ""}}}},
    ),
    "in a rotation list, only the set secrets are masked": (
        {"signed": {"type": "hmac", "secrets": ["new", ""]}},
        {"signed": {"type": "hmac", "secrets": ["****", ""]}},
    ),
    "an admin token": (
        {"backend": {"auth": {"adminToken": "t0k"}}},
        {"backend": {"auth": {"adminToken": "****"}}},
    ),
    "a database URL's password": (
        {"store": {"url": "postgresql://frobs:pw@db:5432/frobs"}},
        {"store": {"url": "postgresql://frobs:****@db:5432/frobs"}},
    ),
    "a database URL without a password is left alone": (
        {"store": {"url": "postgresql://db/frobs"}},
        {"store": {"url": "postgresql://db/frobs"}},
    ),
    "other values are left alone": (
        {"events": {"http": {"topics": ["frobs"], "maxBodyBytes": 10}}},
        {"events": {"http": {"topics": ["frobs"], "maxBodyBytes": 10}}},
    ),
}


@pytest.mark.parametrize("data, shown", MASKED.values(), ids=MASKED.keys())
def test_masked_hides_set_secrets_and_shows_unset_ones_empty(data, shown):
    assert masked(data) == shown


def test_an_unset_optional_secret_loads_empty_and_is_shown_empty(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        "events:\n  modules:\n    github:\n"
        "      webhookSecret: ${FROBS_OLD_SECRET:-}\n",
    )
    config = load_config({"APP_CONFIG": path}, tmp_path)
    assert masked(config.data)["events"]["modules"]["github"]["webhookSecret"] == ""
