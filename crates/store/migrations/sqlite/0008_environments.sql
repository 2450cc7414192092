-- Named environments (an o16n extension): what each asks for, the lock its first successful
-- build resolved (every compute node builds from it), and the state and log of its latest
-- build. `generation` counts the builds asked for, so that a build that was overtaken by a
-- newer one cannot record its outcome. Services and sessions name the environment they run
-- in; a snapshot remembers the environment of the session it was taken from.
CREATE TABLE environments (
    name       TEXT   PRIMARY KEY NOT NULL,
    runtime    TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    spec       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    lock       TEXT,
    packages   TEXT,
    log        TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

ALTER TABLE services ADD COLUMN environment TEXT;
ALTER TABLE sessions ADD COLUMN environment TEXT;
ALTER TABLE snapshots ADD COLUMN environment TEXT;

CREATE INDEX services_by_environment ON services (environment);
