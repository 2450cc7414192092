-- Asynchronous batch executions of a service. The records' inputs are kept as one JSON array,
-- so that submitting a batch is one insert whatever its size. A record's result (the
-- WebServiceResult JSON, output files included as base64) is a row written once, when the
-- record is done; records without one are what a (resumed) runner still has to do.

CREATE TABLE batch_executions (
    id              TEXT PRIMARY KEY NOT NULL,
    service_name    TEXT NOT NULL,
    service_version TEXT NOT NULL,
    owner           TEXT NOT NULL,
    parallel_count  INTEGER NOT NULL,
    state           TEXT NOT NULL,
    total_count     INTEGER NOT NULL,
    completed_count INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    inputs          TEXT NOT NULL
);

CREATE INDEX batch_executions_by_service ON batch_executions (service_name, service_version);

CREATE TABLE batch_results (
    execution_id TEXT NOT NULL,
    record_index INTEGER NOT NULL,
    result       TEXT NOT NULL,
    PRIMARY KEY (execution_id, record_index)
);
