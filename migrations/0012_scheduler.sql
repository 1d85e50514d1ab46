-- The scheduler's claims (DESIGN.md, "Scheduler"): every instance ticks, and for each
-- (job, tick time) only the instance whose INSERT wins runs the job, so a second instance or
-- a retry never raises or bills twice.
CREATE TABLE scheduler_ticks (
    job         text        NOT NULL,
    tick_at     timestamptz NOT NULL,
    claimed_by  text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    -- Filled when the run ends: how many commands it issued, or why it failed.
    finished_at timestamptz,
    outcome     text,
    PRIMARY KEY (job, tick_at)
);
