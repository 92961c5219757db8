-- The event inbox (dead letters are entries marked dead), the delivery ids
-- done, and the newest event received per ordered key.
CREATE TABLE event_inbox (
    id    text    PRIMARY KEY,
    entry json    NOT NULL,
    dead  boolean NOT NULL DEFAULT false
);

CREATE TABLE event_done (
    key     text        PRIMARY KEY,
    done_at timestamptz NOT NULL
);

CREATE TABLE event_order (
    key         text   PRIMARY KEY,
    received_at bigint NOT NULL
);
CREATE INDEX event_order_received_at ON event_order (received_at);
