-- The event store. postgres-es appends and loads through (aggregate_type, aggregate_id,
-- sequence, event_type, event_version, payload, metadata); the other columns are ours and
-- filled by defaults, so postgres-es does not need to know about them.
--
-- global_position orders events, but positions are handed out before commit, so a reader
-- that only remembers "global_position > last" skips events of slow transactions. Catch-up
-- readers therefore order by (tx_id, global_position) and only read transactions older than
-- the oldest one still running (see projections::reader).
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- postgres-es maps every unique violation on this table to an optimistic-lock conflict:
    -- this primary key must stay the only unique constraint here.
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_tx_position ON events (tx_id, global_position);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_tenant ON events (((metadata->>'tenant_id')), global_position);

-- One row per projection: where it is in the log, and whether it is stuck.
CREATE TABLE projection_checkpoints (
    name            text        PRIMARY KEY,
    version         integer     NOT NULL,
    tx_id           xid8        NOT NULL DEFAULT '0',
    position        bigint      NOT NULL DEFAULT 0,
    events_applied  bigint      NOT NULL DEFAULT 0,
    status          text        NOT NULL DEFAULT 'running'
                                CHECK (status IN ('running', 'failed')),
    failed_position bigint,
    last_error      text,
    failed_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
