-- The catalog: one row per stored entity, the refs each committed version
-- changed, and the latest version.
CREATE TABLE catalog_entities (
    ref          text PRIMARY KEY,
    location_key text,
    source       text NOT NULL,
    hash         text NOT NULL,
    entity       json NOT NULL
);

CREATE TABLE catalog_changes (
    version bigint NOT NULL,
    ref     text   NOT NULL,
    PRIMARY KEY (version, ref)
);

CREATE TABLE catalog_state (
    id           integer PRIMARY KEY CHECK (id = 1),
    version      bigint  NOT NULL,
    -- changes of versions up to this one have been pruned
    pruned_up_to bigint  NOT NULL
);

INSERT INTO catalog_state (id, version, pruned_up_to) VALUES (1, 0, 0);
