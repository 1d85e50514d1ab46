-- Read models of issue 4: assets (the `assets` projection) and the global search index (the
-- `search` projection). pg_trgm gives typo-tolerant matching, btree_gin lets the search
-- index lead with tenant_id like every other index (both ship with PostgreSQL itself).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE assets (
    tenant_id         uuid        NOT NULL,
    id                uuid        NOT NULL,
    company_id        uuid        NOT NULL,
    number            bigint      NOT NULL,
    tag               text        NOT NULL,
    name              text        NOT NULL,
    category          text        NOT NULL,
    make              text        NOT NULL DEFAULT '',
    model             text        NOT NULL DEFAULT '',
    serial_number     text        NOT NULL DEFAULT '',
    mac_address       text        NOT NULL DEFAULT '',
    ip_address        text        NOT NULL DEFAULT '',
    operating_system  text        NOT NULL DEFAULT '',
    location          text        NOT NULL DEFAULT '',
    purchase_date     date,
    warranty_end      date,
    vendor            text        NOT NULL DEFAULT '',
    notes             text        NOT NULL DEFAULT '',
    status            text        NOT NULL,
    contact_id        uuid,
    -- [{id, file_name, content_type, size, sha256}], for the asset page.
    documents         jsonb       NOT NULL DEFAULT '[]',
    version           bigint      NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- A company's assets in tag order (the company page, the API's ?company_id=, export).
CREATE INDEX assets_by_company ON assets (tenant_id, company_id, number);
-- All assets in tag order (the assets list, keyset paged).
CREATE INDEX assets_by_number ON assets (tenant_id, number);
-- The assets assigned to a contact (the contact page).
CREATE INDEX assets_by_contact ON assets (tenant_id, contact_id) WHERE contact_id IS NOT NULL;

-- Document contents, outside the event log: the events carry each document's SHA-256, and
-- the same content attached twice is stored once per tenant.
CREATE TABLE asset_document_blobs (
    tenant_id   uuid        NOT NULL,
    sha256      text        NOT NULL,
    content     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, sha256)
);

-- One row per searchable record (company, contact, asset, credential label). `keys` holds
-- identifiers matched exactly or by prefix (tags, serials, MAC and IP addresses, emails,
-- phone digits); `words` holds names and labels, matched by trigram similarity (typos) and
-- full text. Never a secret.
CREATE TABLE search_entries (
    tenant_id   uuid        NOT NULL,
    kind        text        NOT NULL,
    id          uuid        NOT NULL,
    title       text        NOT NULL,
    detail      text        NOT NULL DEFAULT '',
    -- The page the result opens.
    href        text        NOT NULL,
    keys        text        NOT NULL DEFAULT '',
    words       text        NOT NULL,
    inactive    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, kind, id)
);

CREATE INDEX search_entries_trgm
    ON search_entries USING gin (tenant_id, (lower(words || ' ' || keys)) gin_trgm_ops);
CREATE INDEX search_entries_words
    ON search_entries USING gin (tenant_id, to_tsvector('simple', words));
