-- Read models of issue 5, fed by the `work_orders` projection: work orders, their time
-- entries, running timers and status links. Every index leads with tenant_id, except the
-- scheduler's scan (it looks at every tenant) and the link digest (a visitor has only the
-- token).

CREATE TABLE work_orders (
    tenant_id            uuid          NOT NULL,
    id                   uuid          NOT NULL,
    number               bigint        NOT NULL,
    company_id           uuid          NOT NULL,
    contact_id           uuid,
    title                text          NOT NULL,
    description          text          NOT NULL DEFAULT '',
    work_type            text          NOT NULL,
    priority             text          NOT NULL,
    -- low 0, normal 1, high 2, urgent 3 (sorting by urgency).
    priority_rank        smallint      NOT NULL,
    status               text          NOT NULL,
    origin               text          NOT NULL,
    assignee_id          uuid,
    asset_ids            uuid[]        NOT NULL DEFAULT '{}',
    -- The order puts its assets in repair while it is open.
    holds_assets         boolean       NOT NULL DEFAULT false,
    opened_at            timestamptz   NOT NULL,
    responded_at         timestamptz,
    -- Set when resolved (or closed as no fix), cleared on reopening.
    resolved_at          timestamptz,
    -- Set when closed, cancelled or closed as no fix, cleared on reopening.
    closed_at            timestamptz,
    -- The SLA (all NULL / false when the order has none). Targets in business minutes.
    response_minutes     integer,
    resolution_minutes   integer,
    paused_minutes       integer       NOT NULL DEFAULT 0,
    sla_paused_since     timestamptz,
    response_due_at      timestamptz,
    resolution_due_at    timestamptz,
    response_warn_at     timestamptz,
    resolution_warn_at   timestamptz,
    response_warned      boolean       NOT NULL DEFAULT false,
    response_breached    boolean       NOT NULL DEFAULT false,
    resolution_warned    boolean       NOT NULL DEFAULT false,
    resolution_breached  boolean       NOT NULL DEFAULT false,
    -- Derived from the columns above by PostgreSQL itself, so no event can leave them stale
    -- (`LIKE ... INCLUDING ALL` copies the expressions into a rebuild's shadow table).
    -- none: no SLA; breached: a breach was raised; met: resolved without breach; paused: the
    -- clock is stopped while work remains; warning: a warning was raised; ok: otherwise.
    sla_state            text          NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN response_minutes IS NULL THEN 'none'
            WHEN response_breached OR resolution_breached THEN 'breached'
            WHEN resolved_at IS NOT NULL THEN 'met'
            WHEN sla_paused_since IS NOT NULL
                 AND status IN ('new', 'assigned', 'in_progress', 'waiting_on_customer', 'reopened')
                THEN 'paused'
            WHEN response_warned OR resolution_warned THEN 'warning'
            ELSE 'ok'
        END) STORED,
    -- The earliest instant at which the scheduler has something to raise: for each target
    -- not yet breached (the response target only until the first response), its warning
    -- time if not warned yet, else its due time. NULL without an SLA, while the clock is
    -- stopped, or when nothing is left to raise.
    sla_next_check_at    timestamptz   GENERATED ALWAYS AS (
        CASE
            WHEN response_minutes IS NULL
                 OR sla_paused_since IS NOT NULL
                 OR status NOT IN ('new', 'assigned', 'in_progress', 'reopened')
                THEN NULL
            ELSE LEAST(
                CASE
                    WHEN responded_at IS NOT NULL OR response_breached THEN NULL
                    WHEN response_warned THEN response_due_at
                    ELSE response_warn_at
                END,
                CASE
                    WHEN resolution_breached THEN NULL
                    WHEN resolution_warned THEN resolution_due_at
                    ELSE resolution_warn_at
                END)
        END) STORED,
    comments             integer       NOT NULL DEFAULT 0,
    public_comments      integer       NOT NULL DEFAULT 0,
    -- [{id, file_name, content_type, size, sha256}], like an asset's documents.
    attachments          jsonb         NOT NULL DEFAULT '[]',
    rating               smallint,
    rating_comment       text          NOT NULL DEFAULT '',
    -- Sums over the order's current time entries.
    billable_minutes     integer       NOT NULL DEFAULT 0,
    contract_minutes     integer       NOT NULL DEFAULT 0,
    billable_amount      numeric(14,2) NOT NULL DEFAULT 0,
    version              bigint        NOT NULL,
    created_at           timestamptz   NOT NULL,
    updated_at           timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- All orders, newest number first (the list, keyset paged; lookup by number).
CREATE INDEX work_orders_by_number ON work_orders (tenant_id, number);
-- The list filtered by status (the board's columns).
CREATE INDEX work_orders_by_status ON work_orders (tenant_id, status, number);
-- A technician's orders.
CREATE INDEX work_orders_by_assignee ON work_orders (tenant_id, assignee_id, number)
    WHERE assignee_id IS NOT NULL;
-- A company's orders (its Work orders tab).
CREATE INDEX work_orders_by_company ON work_orders (tenant_id, company_id, number);
-- The orders naming an asset (`asset_ids <> '{}' AND asset_ids @> ARRAY[id]`); btree_gin
-- (migration 0008) lets it lead with tenant_id. Partial, like companies_by_tag: orders
-- without assets cost no GIN entry.
CREATE INDEX work_orders_by_asset ON work_orders USING gin (tenant_id, asset_ids)
    WHERE asset_ids <> '{}';
-- The SLA scheduler's scan, across tenants: what is due, oldest first.
CREATE INDEX work_orders_sla_due ON work_orders (sla_next_check_at)
    WHERE sla_next_check_at IS NOT NULL;

-- Time logged on orders. `company_id` is the order's, copied for billing queries.
CREATE TABLE work_order_time_entries (
    tenant_id      uuid          NOT NULL,
    id             uuid          NOT NULL,
    work_order_id  uuid          NOT NULL,
    company_id     uuid          NOT NULL,
    technician_id  uuid          NOT NULL,
    -- The day of the work in the tenant's time zone.
    work_date      date          NOT NULL,
    minutes        integer       NOT NULL,
    note           text          NOT NULL DEFAULT '',
    -- billable or contract.
    billing        text          NOT NULL,
    after_hours    boolean       NOT NULL DEFAULT false,
    rate           numeric(14,2) NOT NULL,
    amount         numeric(14,2) NOT NULL,
    cost_rate      numeric(14,2) NOT NULL,
    cost           numeric(14,2) NOT NULL,
    started_at     timestamptz,
    ended_at       timestamptz,
    -- The invoice that billed this entry (issue 7).
    invoice_id     uuid,
    created_at     timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX work_order_time_entries_by_order
    ON work_order_time_entries (tenant_id, work_order_id, work_date);
-- A company's time in a period (contract hours used).
CREATE INDEX work_order_time_entries_by_company
    ON work_order_time_entries (tenant_id, company_id, work_date);
-- Billable work not invoiced yet.
CREATE INDEX work_order_time_entries_unbilled
    ON work_order_time_entries (tenant_id, company_id)
    WHERE billing = 'billable' AND invoice_id IS NULL;

-- Running timers: one per technician and order.
CREATE TABLE work_order_timers (
    tenant_id      uuid        NOT NULL,
    work_order_id  uuid        NOT NULL,
    technician_id  uuid        NOT NULL,
    started_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, work_order_id, technician_id)
);

CREATE INDEX work_order_timers_by_technician ON work_order_timers (tenant_id, technician_id);

-- Status links (technician and customer). The token is never stored, only its digest.
CREATE TABLE work_order_links (
    tenant_id      uuid        NOT NULL,
    id             uuid        NOT NULL,
    work_order_id  uuid        NOT NULL,
    -- technician or customer.
    kind           text        NOT NULL,
    token_digest   text        NOT NULL,
    user_id        uuid,
    expires_at     timestamptz NOT NULL,
    max_uses       integer     NOT NULL,
    uses           integer     NOT NULL DEFAULT 0,
    revoked        boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- An order's links (its page).
CREATE INDEX work_order_links_by_order ON work_order_links (tenant_id, work_order_id);
-- Found by the digest of the link's token (the token is all a visitor has).
CREATE UNIQUE INDEX work_order_links_by_digest ON work_order_links (token_digest);
