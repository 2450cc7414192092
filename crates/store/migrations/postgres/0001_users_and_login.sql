-- Local accounts, login sessions (refresh-token chains) and node-wide settings.
-- Times are Unix seconds in 64-bit integers so that SQLite and PostgreSQL store them alike.

CREATE TABLE users (
    username      TEXT   PRIMARY KEY,
    password_hash TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE login_sessions (
    id             TEXT   PRIMARY KEY,
    username       TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    refresh_digest TEXT   NOT NULL UNIQUE,
    generation     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL
);

CREATE INDEX login_sessions_by_username ON login_sessions (username);

CREATE TABLE settings (
    key   TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);
