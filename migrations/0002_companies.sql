-- Read model of the companies list and detail, fed by the `companies` projection.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE companies (
    tenant_id     uuid          NOT NULL,
    id            uuid          NOT NULL,
    name          text          NOT NULL,
    monthly_rate  numeric(14,2) NOT NULL,
    archived      boolean       NOT NULL DEFAULT false,
    version       bigint        NOT NULL,
    created_at    timestamptz   NOT NULL,
    updated_at    timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX companies_by_name ON companies (tenant_id, lower(name), id);
CREATE INDEX companies_name_trgm ON companies USING gin (name gin_trgm_ops);
