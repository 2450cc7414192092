-- Scale-out: content by digest, the session -> compute node map, the registered compute nodes
-- and batch leases.
--
-- Snapshot archives and the snapshot copies (or models) of services are content: stored once
-- per SHA-256 digest, in chunks, so that no size is limited by one field and compute nodes can
-- be sent content by digest. `snapshots.content` and `services.snapshot` stay only for
-- databases from before: the server moves what they hold into `contents` at start.

CREATE TABLE contents (
    digest     TEXT    PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- While content is arriving its chunks are kept under a key `partial:<unix ms>:<id>`, renamed
-- to the digest once complete.
CREATE TABLE content_chunks (
    digest TEXT    NOT NULL,
    seq    BIGINT NOT NULL,
    data   BYTEA   NOT NULL,
    PRIMARY KEY (digest, seq)
);

ALTER TABLE snapshots ADD COLUMN content_digest TEXT;
ALTER TABLE services ADD COLUMN content_digest TEXT;

-- Every open session and the compute node that holds it, so that any web node serves it.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    name       TEXT,
    runtime    TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX sessions_by_owner ON sessions (owner);
CREATE INDEX sessions_by_node ON sessions (node);

-- What `/computenodes` stores: URIs and ranges, verbatim, in the order given.
CREATE TABLE compute_node_entries (
    entry    TEXT    PRIMARY KEY,
    position BIGINT NOT NULL
);

-- The web node running a batch holds a lease on it until `lease_until` (Unix milliseconds)
-- and renews it while it works; another web node takes over a batch whose lease expired.
ALTER TABLE batch_executions ADD COLUMN lease_owner TEXT;
ALTER TABLE batch_executions ADD COLUMN lease_until BIGINT;
