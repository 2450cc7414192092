-- Asynchronous batch executions of a service and their records. A record's result is the
-- WebServiceResult JSON (output files included, base64), written once when the record is done;
-- records without a result are the ones a (resumed) runner still has to do.

CREATE TABLE batch_executions (
    id              TEXT PRIMARY KEY,
    service_name    TEXT NOT NULL,
    service_version TEXT NOT NULL,
    owner           TEXT NOT NULL,
    parallel_count  BIGINT NOT NULL,
    state           TEXT NOT NULL,
    total_count     BIGINT NOT NULL,
    completed_count BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE INDEX batch_executions_by_service ON batch_executions (service_name, service_version);

CREATE TABLE batch_records (
    execution_id TEXT NOT NULL,
    record_index BIGINT NOT NULL,
    input        TEXT NOT NULL,
    result       TEXT,
    PRIMARY KEY (execution_id, record_index)
);
