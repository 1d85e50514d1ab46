-- Notifications (issue 6).
--
-- Secrets of messages (the link of an invitation, a password reset or a status link) and of
-- providers (an SMTP password, Twilio's auth token, a gateway's auth header) are sealed in
-- `vault_secrets` like credentials' secrets, so `vault rotate-key` re-seals them too. The
-- `credential_id` column names the record a set belongs to (a notification, a tenant).
ALTER TABLE vault_secrets DROP CONSTRAINT vault_secrets_field_check;
ALTER TABLE vault_secrets ADD CONSTRAINT vault_secrets_field_check
    CHECK (field IN ('password', 'totp_secret', 'notes', 'link', 'smtp_password', 'sms_secret'));

-- The delivery log (the `notifications` projection): one row per notification. The full
-- message is read from the notification's own events when someone opens it.
CREATE TABLE notifications (
    tenant_id           uuid        NOT NULL,
    id                  uuid        NOT NULL,
    kind                text        NOT NULL,
    channel             text        NOT NULL,
    recipient_kind      text        NOT NULL,
    recipient_id        uuid,
    recipient_name      text        NOT NULL,
    address             text        NOT NULL,
    company_id          uuid,
    work_order_id       uuid,
    subject             text        NOT NULL,
    status              text        NOT NULL,
    attempts            integer     NOT NULL DEFAULT 0,
    provider            text,
    provider_message_id text,
    last_error          text,
    delivery            text,
    retry_at            timestamptz,
    queued_at           timestamptz NOT NULL,
    sent_at             timestamptz,
    updated_at          timestamptz NOT NULL,
    resend_of           uuid,
    PRIMARY KEY (tenant_id, id)
);

-- The delivery log, newest first, with its filters.
CREATE INDEX notifications_by_time ON notifications (tenant_id, queued_at DESC, id DESC);
CREATE INDEX notifications_by_status ON notifications (tenant_id, status, queued_at DESC);
CREATE INDEX notifications_by_recipient ON notifications (tenant_id, address, queued_at DESC);

-- The delivery worker's scan across tenants: what waits to be sent (queued now, or retrying
-- once `retry_at` has passed), and what was being handed over when a worker stopped.
CREATE INDEX notifications_due ON notifications (retry_at NULLS FIRST)
    WHERE status IN ('queued', 'retrying', 'sending');

-- Provider callbacks name the provider's message id.
CREATE INDEX notifications_by_provider_id ON notifications (tenant_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
