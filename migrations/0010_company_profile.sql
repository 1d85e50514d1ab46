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

-- The list filtered by customer status, in name order (keyset paging).
CREATE INDEX companies_by_customer_status
    ON companies (tenant_id, customer_status, lower(name), id);
-- The list filtered by tag (`tags @> ARRAY[tag]`); btree_gin lets it lead with tenant_id.
CREATE INDEX companies_by_tag ON companies USING gin (tenant_id, tags);
