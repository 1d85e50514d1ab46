-- The credentials vault (issue 4). Secrets never enter the event log: each set of a
-- credential's secrets is sealed (AES-256-GCM, `v1.<key id>.<base64url>`) into this table,
-- and the credential's events name the set by `secret_id`. `vault rotate-key` re-seals rows in
-- place under the new key; `key_id` says which key each row needs.
CREATE TABLE vault_secrets (
    tenant_id      uuid        NOT NULL,
    secret_id      uuid        NOT NULL,
    field          text        NOT NULL CHECK (field IN ('password', 'totp_secret', 'notes')),
    credential_id  uuid        NOT NULL,
    key_id         text        NOT NULL,
    sealed         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, secret_id, field)
);

-- Rotation and the start-up check look rows up by key.
CREATE INDEX vault_secrets_by_key ON vault_secrets (key_id);

-- One sealed canary per master key this database has known: at start-up the configured keys
-- must open them, so a wrong key stops the service instead of failing at the first reveal.
CREATE TABLE vault_keys (
    key_id      text        PRIMARY KEY,
    canary      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Read model of credentials (the `credentials` projection): what may be shown, never secrets.
CREATE TABLE credentials (
    tenant_id         uuid        NOT NULL,
    id                uuid        NOT NULL,
    company_id        uuid        NOT NULL,
    asset_id          uuid,
    label             text        NOT NULL,
    username          text        NOT NULL DEFAULT '',
    url               text        NOT NULL DEFAULT '',
    secret_id         uuid        NOT NULL,
    has_password      boolean     NOT NULL,
    has_totp          boolean     NOT NULL,
    has_notes         boolean     NOT NULL,
    reveals           bigint      NOT NULL DEFAULT 0,
    last_revealed_at  timestamptz,
    last_revealed_by  text,
    removed           boolean     NOT NULL DEFAULT false,
    version           bigint      NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX credentials_by_company ON credentials (tenant_id, company_id, lower(label), id);
CREATE INDEX credentials_by_asset ON credentials (tenant_id, asset_id) WHERE asset_id IS NOT NULL;

-- Share links. Found by the digest of the link's token (the token is the only thing a
-- visitor has, so this one index cannot lead with tenant_id).
CREATE TABLE credential_shares (
    tenant_id      uuid        NOT NULL,
    id             uuid        NOT NULL,
    credential_id  uuid        NOT NULL,
    token_digest   text        NOT NULL,
    expires_at     timestamptz NOT NULL,
    max_views      integer     NOT NULL,
    views          integer     NOT NULL DEFAULT 0,
    revoked        boolean     NOT NULL DEFAULT false,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX credential_shares_by_credential ON credential_shares (tenant_id, credential_id, created_at);
CREATE UNIQUE INDEX credential_shares_by_digest ON credential_shares (token_digest);
