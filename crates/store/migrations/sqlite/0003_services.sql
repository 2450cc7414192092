-- Published web services, one row per name and version. Each keeps its own copy of the
-- snapshot it was published with, because clients delete the snapshot right after publishing.
-- `revision` changes on every update, so that workers holding the old definition reload it.

CREATE TABLE services (
    name              TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    owner             TEXT    NOT NULL,
    runtime           TEXT    NOT NULL,
    created_at_micros INTEGER NOT NULL,
    revision          TEXT    NOT NULL,
    description       TEXT,
    operation_id      TEXT,
    code              TEXT    NOT NULL,
    init_code         TEXT,
    inputs            TEXT    NOT NULL,
    outputs           TEXT    NOT NULL,
    output_file_names TEXT    NOT NULL,
    snapshot_id       TEXT,
    snapshot          BLOB,
    PRIMARY KEY (name, version)
);
