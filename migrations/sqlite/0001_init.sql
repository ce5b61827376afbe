-- Shears schema. Times are unix milliseconds (INTEGER) so that both stores share one set of queries.

CREATE TABLE tenants (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- The single tenant used until API keys exist.
INSERT INTO tenants (id, name, created_at)
VALUES (X'00000000000000000000000000000001', 'default', 0);

CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE models (
    id            BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    architecture  TEXT,
    tensor_count  INTEGER NOT NULL DEFAULT 0,
    params        INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    dtypes        TEXT NOT NULL DEFAULT '{}',
    parent_id     BLOB,
    job_id        BLOB,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX models_tenant_list ON models (tenant_id, id DESC);
CREATE INDEX models_uploading ON models (status, updated_at);

CREATE TABLE model_files (
    model_id  BLOB NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    sha256    TEXT NOT NULL REFERENCES blobs (sha256),
    size      INTEGER NOT NULL,
    PRIMARY KEY (model_id, name)
);
CREATE INDEX model_files_blob ON model_files (sha256);

CREATE TABLE model_tensors (
    model_id  BLOB NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    dtype     TEXT NOT NULL,
    shape     TEXT NOT NULL,
    file      TEXT NOT NULL,
    PRIMARY KEY (model_id, name)
);

CREATE TABLE jobs (
    id                BLOB PRIMARY KEY,
    tenant_id         BLOB NOT NULL REFERENCES tenants (id),
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    model_id          BLOB NOT NULL,
    recipe            TEXT NOT NULL,
    resolved_recipe   TEXT NOT NULL,
    progress          TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    heartbeat_at      INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    output_model_id   BLOB,
    report            TEXT,
    idempotency_key   TEXT,
    request_hash      TEXT,
    engine_version    TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_tenant_list ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_queue ON jobs (status, id);
CREATE INDEX jobs_model ON jobs (model_id);

CREATE TABLE job_tensor_metrics (
    job_id        BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    shape         TEXT NOT NULL,
    params        INTEGER NOT NULL,
    zeros_before  INTEGER NOT NULL,
    zeros_after   INTEGER NOT NULL,
    sparsity      REAL NOT NULL,
    threshold     REAL,
    millis        REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
