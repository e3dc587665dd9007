-- The audit trail beside `calls`: what each verification did over time, security signals, and
-- what administrators did. No column holds a personal identity number. The retention policy
-- (`[store] retention_days`) clears the columns that could point at a person (order references,
-- source addresses) and keeps the rest as aggregate data.

-- One row per step of a verification: started (detail: the provider's order reference), hint
-- (detail: the hint), completed, failed (detail: the X-Identity-Reason token), cancelled.
CREATE TABLE verification_events (
    id      INTEGER PRIMARY KEY,             -- insertion order, for events in the same millisecond
    call_id TEXT NOT NULL,                   -- idgate's call id
    at      BIGINT NOT NULL,
    method  TEXT NOT NULL,                   -- X-Identity-Method token
    kind    TEXT NOT NULL CHECK (kind IN ('started', 'hint', 'completed', 'failed', 'cancelled')),
    detail  TEXT
);

CREATE INDEX verification_events_call_id ON verification_events (call_id);
CREATE INDEX verification_events_at ON verification_events (at);

-- Spoofing attempts and fraud signals.
CREATE TABLE security_events (
    id      INTEGER PRIMARY KEY,
    at      BIGINT NOT NULL,
    call_id TEXT,                            -- idgate's call id, when there is a call
    kind    TEXT NOT NULL CHECK (kind IN ('spoofed-headers', 'not-in-call', 'untrusted-source')),
    detail  TEXT,                            -- header names only, never values
    source  TEXT                             -- the source IP address of the request
);

CREATE INDEX security_events_call_id ON security_events (call_id);
CREATE INDEX security_events_at ON security_events (at);

-- What administrators did through the CLI or the management API.
CREATE TABLE admin_actions (
    id      INTEGER PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,                   -- 'cli', 'api-token', 'retention'
    action  TEXT NOT NULL,                   -- 'customer-add', 'privacy-erase', ...
    target  TEXT NOT NULL                    -- e.g. a customer id; never a personal number
);

CREATE INDEX admin_actions_at ON admin_actions (at);

-- GDPR requests find a person's calls by the numbers they call from.
CREATE INDEX calls_caller ON calls (caller);
