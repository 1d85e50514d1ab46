-- Sign-in names are unique across the deployment, which no single aggregate can guarantee.
-- A command that creates a person first reserves the address here (in the command layer);
-- the reservation names the person it belongs to, so a retry of the same creation finds its
-- own reservation.
CREATE TABLE user_emails (
    email       text        PRIMARY KEY,
    user_id     uuid        NOT NULL UNIQUE,
    tenant_id   uuid        NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
