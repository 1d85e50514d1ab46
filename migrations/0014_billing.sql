-- Billing and receivables (issue 7): read models of the `receivables` projection, fed by the
-- `ledger` aggregate (one per customer company). Money is numeric(14,2), exact.

-- One row per invoice (drafts too), with its running balance.
CREATE TABLE invoices (
    tenant_id    uuid          NOT NULL,
    id           uuid          NOT NULL,
    company_id   uuid          NOT NULL,
    number       bigint,
    status       text          NOT NULL,
    issue_date   date,
    due_date     date,
    subtotal     numeric(14,2) NOT NULL,
    tax          numeric(14,2) NOT NULL,
    total        numeric(14,2) NOT NULL,
    paid         numeric(14,2) NOT NULL DEFAULT 0,
    credited     numeric(14,2) NOT NULL DEFAULT 0,
    balance      numeric(14,2) NOT NULL DEFAULT 0,
    line_count   integer       NOT NULL,
    -- The contract period it bills, if any.
    period_start date,
    period_end   date,
    reminders    integer       NOT NULL DEFAULT 0,
    created_at   timestamptz   NOT NULL,
    updated_at   timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX invoices_by_company ON invoices (tenant_id, company_id, issue_date DESC, number DESC);
CREATE INDEX invoices_by_number ON invoices (tenant_id, number);
CREATE INDEX invoices_by_due ON invoices (tenant_id, due_date);
-- Today's aging reads only what is still owed.
CREATE INDEX invoices_open ON invoices (tenant_id, company_id) INCLUDE (due_date, balance)
    WHERE balance <> 0;

CREATE TABLE payments (
    tenant_id    uuid          NOT NULL,
    id           uuid          NOT NULL,
    company_id   uuid          NOT NULL,
    amount       numeric(14,2) NOT NULL,
    received_on  date          NOT NULL,
    method       text          NOT NULL,
    reference    text          NOT NULL DEFAULT '',
    allocated    numeric(14,2) NOT NULL DEFAULT 0,
    refunded     numeric(14,2) NOT NULL DEFAULT 0,
    unapplied    numeric(14,2) NOT NULL DEFAULT 0,
    reversed     boolean       NOT NULL DEFAULT false,
    created_at   timestamptz   NOT NULL,
    updated_at   timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX payments_by_company ON payments (tenant_id, company_id, received_on DESC);
CREATE INDEX payments_unapplied ON payments (tenant_id, company_id) INCLUDE (unapplied)
    WHERE unapplied <> 0;

-- What of each payment went to which invoice (the invoice's and the payment's pages).
CREATE TABLE payment_allocations (
    tenant_id   uuid          NOT NULL,
    payment_id  uuid          NOT NULL,
    invoice_id  uuid          NOT NULL,
    company_id  uuid          NOT NULL,
    amount      numeric(14,2) NOT NULL,
    on_date     date          NOT NULL,
    PRIMARY KEY (tenant_id, payment_id, invoice_id)
);

CREATE INDEX payment_allocations_by_invoice ON payment_allocations (tenant_id, invoice_id);

CREATE TABLE credit_notes (
    tenant_id   uuid          NOT NULL,
    id          uuid          NOT NULL,
    company_id  uuid          NOT NULL,
    invoice_id  uuid          NOT NULL,
    number      bigint        NOT NULL,
    amount      numeric(14,2) NOT NULL,
    date        date          NOT NULL,
    reason      text          NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX credit_notes_by_invoice ON credit_notes (tenant_id, invoice_id);

-- Dated movements of what each company owes, for the aging report as of a past date and for
-- statements: `invoice_id` set: the invoice's outstanding amount moves (issued +, credited,
-- paid or voided −, unapplied or a reversed payment +); `invoice_id` null: the company's
-- unapplied credit moves (payment received +, allocated −, refunded −, unapplied +).
-- Append-only, no unique index (like `activity`: a rebuild sorts indexes once at the end).
CREATE TABLE ar_entries (
    tenant_id   uuid          NOT NULL,
    company_id  uuid          NOT NULL,
    invoice_id  uuid,
    payment_id  uuid,
    on_date     date          NOT NULL,
    amount      numeric(14,2) NOT NULL,
    kind        text          NOT NULL,
    position    bigint        NOT NULL
);

CREATE INDEX ar_entries_by_date ON ar_entries (tenant_id, on_date);
CREATE INDEX ar_entries_by_company ON ar_entries (tenant_id, company_id, on_date, position);

-- The contracts the billing run goes through (the `contracts` projection): companies whose
-- contract is billed, with its terms as the run reads them.
CREATE TABLE billing_contracts (
    tenant_id    uuid        NOT NULL,
    company_id   uuid        NOT NULL,
    billing_day  integer     NOT NULL,
    start_date   date        NOT NULL,
    end_date     date,
    archived     boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, company_id)
);

-- The run's scan across tenants: contracts that may have a period due.
CREATE INDEX billing_contracts_active ON billing_contracts (start_date) WHERE NOT archived;
