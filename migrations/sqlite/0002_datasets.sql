-- Text for calibration and evaluation, stored as a blob.
CREATE TABLE datasets (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES blobs (sha256),
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX datasets_tenant_list ON datasets (tenant_id, id DESC);
CREATE INDEX datasets_blob ON datasets (sha256);
