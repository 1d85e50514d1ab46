-- Read model of a customer company's people (the `contacts` projection, issue 4).
CREATE TABLE contacts (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    company_id    uuid        NOT NULL,
    name          text        NOT NULL,
    email         text,
    office_phone  text        NOT NULL DEFAULT '',
    cell_phone    text        NOT NULL DEFAULT '',
    department    text        NOT NULL DEFAULT '',
    position      text        NOT NULL DEFAULT '',
    is_primary    boolean     NOT NULL DEFAULT false,
    billing       boolean     NOT NULL DEFAULT false,
    notes         text        NOT NULL DEFAULT '',
    former        boolean     NOT NULL DEFAULT false,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX contacts_by_company ON contacts (tenant_id, company_id, lower(name), id);
