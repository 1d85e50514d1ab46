-- The company profile (issue 4): customer status, billing and site addresses, phone, website,
-- notes and tags, in the `companies` read model.
--
-- Companies registered before this migration have no profile events, so what their events fold
-- to is exactly these defaults (active, empty profile): existing rows are right as they stand.
-- The projection's version moves to 2 all the same (its rows changed shape), so a deployment
-- rebuilds the table from the log once when its runner starts.
CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE companies
    ADD COLUMN customer_status text   NOT NULL DEFAULT 'active',
    ADD COLUMN billing_address text   NOT NULL DEFAULT '',
    ADD COLUMN site_address    text   NOT NULL DEFAULT '',
    ADD COLUMN phone           text   NOT NULL DEFAULT '',
    ADD COLUMN website         text   NOT NULL DEFAULT '',
    ADD COLUMN notes           text   NOT NULL DEFAULT '',
    ADD COLUMN tags            text[] NOT NULL DEFAULT '{}';

-- The list filtered by customer status reads the name-order index and filters: a tenant's
-- companies are few, and one more index on every row cost the catch-up ~15% (measured with
-- `replay-tools bench`).
-- The list filtered by tag (`tags <> '{}' AND tags @> ARRAY[tag]`); btree_gin lets it lead
-- with tenant_id. Partial: untagged companies (most of them, and every one in the projection
-- benchmarks) cost the catch-up and the rebuild no GIN entry at all.
CREATE INDEX companies_by_tag ON companies USING gin (tenant_id, tags) WHERE tags <> '{}';
