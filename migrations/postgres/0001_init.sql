-- Shears schema. Times are unix milliseconds (BIGINT) so that both stores share one set of queries.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- The single tenant used until API keys exist.
INSERT INTO tenants (id, name, created_at)
VALUES ('00000000-0000-0000-0000-000000000001', 'default', 0);

CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE models (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    architecture  TEXT,
    tensor_count  BIGINT NOT NULL DEFAULT 0,
    params        BIGINT NOT NULL DEFAULT 0,
    bytes         BIGINT NOT NULL DEFAULT 0,
    dtypes        JSONB NOT NULL DEFAULT '{}',
    parent_id     UUID,
    job_id        UUID,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX models_tenant_list ON models (tenant_id, id DESC);
CREATE INDEX models_uploading ON models (status, updated_at);

CREATE TABLE model_files (
    model_id  UUID NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    sha256    TEXT NOT NULL REFERENCES blobs (sha256),
    size      BIGINT NOT NULL,
    PRIMARY KEY (model_id, name)
);
CREATE INDEX model_files_blob ON model_files (sha256);

CREATE TABLE model_tensors (
    model_id  UUID NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    dtype     TEXT NOT NULL,
    shape     JSONB NOT NULL,
    file      TEXT NOT NULL,
    PRIMARY KEY (model_id, name)
);

CREATE TABLE jobs (
    id                UUID PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants (id),
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    model_id          UUID NOT NULL,
    recipe            JSONB NOT NULL,
    resolved_recipe   JSONB NOT NULL,
    progress          JSONB NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    heartbeat_at      BIGINT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    error             JSONB,
    output_model_id   UUID,
    report            JSONB,
    idempotency_key   TEXT,
    request_hash      TEXT,
    engine_version    TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_tenant_list ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_queue ON jobs (status, id);
CREATE INDEX jobs_model ON jobs (model_id);

CREATE TABLE job_tensor_metrics (
    job_id        UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    shape         JSONB NOT NULL,
    params        BIGINT NOT NULL,
    zeros_before  BIGINT NOT NULL,
    zeros_after   BIGINT NOT NULL,
    sparsity      DOUBLE PRECISION NOT NULL,
    threshold     DOUBLE PRECISION,
    millis        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, name)
);
