-- Session snapshots: a zip of workspace and working directory, private to their owner.
-- Owners are not a foreign key: later they may come from a directory, not the users table.

CREATE TABLE snapshots (
    id           TEXT   PRIMARY KEY,
    name         TEXT,
    owner        TEXT   NOT NULL,
    runtime      TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    content_size BIGINT NOT NULL,
    content      BYTEA  NOT NULL
);

CREATE INDEX snapshots_by_owner ON snapshots (owner);
