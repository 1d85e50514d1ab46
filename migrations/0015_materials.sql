-- Parts and consumables used on work orders (issue 7: billed with the company's next invoice).
-- Written by the work_orders projection.
CREATE TABLE work_order_materials (
    tenant_id      uuid          NOT NULL,
    id             uuid          NOT NULL,
    work_order_id  uuid          NOT NULL,
    company_id     uuid          NOT NULL,
    description    text          NOT NULL,
    sku            text          NOT NULL DEFAULT '',
    quantity       numeric(12,3) NOT NULL,
    unit_price     numeric(14,2) NOT NULL,
    -- billable or contract.
    billing        text          NOT NULL,
    amount         numeric(14,2) NOT NULL,
    -- The day it was used, in the tenant's time zone.
    used_on        date          NOT NULL,
    added_by       uuid          NOT NULL,
    -- The invoice that billed this line.
    invoice_id     uuid,
    created_at     timestamptz   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX work_order_materials_by_order
    ON work_order_materials (tenant_id, work_order_id, used_on);
-- Billable materials not invoiced yet.
CREATE INDEX work_order_materials_unbilled
    ON work_order_materials (tenant_id, company_id)
    WHERE billing = 'billable' AND invoice_id IS NULL;
