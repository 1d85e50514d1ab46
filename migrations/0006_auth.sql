-- Sign-in state that is not a domain fact (and so not event-sourced): sessions, the sign-in
-- throttle and the outbox of messages waiting for the notifications service. Also the
-- identity read models fed by the `users` projection: members of each tenant and API tokens.

-- One row per signed-in browser. The cookie carries a random secret; only its SHA-256
-- digest is stored, so a copy of this table signs nobody in.
CREATE TABLE sessions (
    id            uuid        PRIMARY KEY,
    secret_digest text        NOT NULL UNIQUE,
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    user_agent    text        NOT NULL DEFAULT '',
    address       text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

-- Failed sign-ins per key (`account:<email>` or `address:<ip>`): after a few failures the
-- key is locked for a time that doubles with each further failure.
CREATE TABLE sign_in_throttle (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL,
    last_failure  timestamptz NOT NULL,
    locked_until  timestamptz
);

-- Messages for people (invitations, password resets) until the notifications service sends
-- them. The link they carry is a one-time secret with an expiry.
CREATE TABLE outbox (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    kind        text        NOT NULL,
    recipient   text        NOT NULL,
    subject     text        NOT NULL,
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

-- Read model: every person of every tenant with their role (projection `users`).
CREATE TABLE users (
    tenant_id    uuid        NOT NULL,
    id           uuid        NOT NULL,
    email        text        NOT NULL DEFAULT '',
    name         text        NOT NULL DEFAULT '',
    role         text        NOT NULL DEFAULT '',
    company_id   uuid,
    member       boolean     NOT NULL DEFAULT false,
    enabled      boolean     NOT NULL DEFAULT true,
    invited      boolean     NOT NULL DEFAULT false,
    has_password boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX users_by_tenant ON users (tenant_id, lower(name), id);

-- Read model: API tokens by digest (projection `users`).
CREATE TABLE api_tokens (
    token_digest text        PRIMARY KEY,
    id           uuid        NOT NULL UNIQUE,
    tenant_id    uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id, created_at);
