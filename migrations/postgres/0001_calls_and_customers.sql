-- idgate schema, version 1, PostgreSQL: mirrors migrations/sqlite (same tables, types and
-- indexes). Ids are TEXT UUIDs, timestamps are BIGINT unix milliseconds.

-- One row per inbound call. The verdict columns describe this call only: no personal identity
-- number is ever stored here, and nothing marks a caller number as trusted.
CREATE TABLE calls (
    id               TEXT PRIMARY KEY NOT NULL,   -- idgate's call id (X-Identity-Call)
    sip_call_id      TEXT NOT NULL,               -- Call-ID of the inbound leg
    caller           TEXT NOT NULL,               -- E.164, or 'anonymous'
    called           TEXT NOT NULL,               -- Request-URI user
    route            TEXT,                        -- dialplan route name; NULL if none matched
    started_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    verdict_at       BIGINT,
    status           TEXT CHECK (status IN ('verified', 'unverified')),
    reason           TEXT,                        -- X-Identity-Reason token, when unverified
    method           TEXT,                        -- X-Identity-Method token, when one was tried
    transfer_mode    TEXT CHECK (transfer_mode IN ('b2bua', 'refer')),
    transfer_outcome TEXT CHECK (transfer_outcome IN
                         ('connected', 'referred', 'abandoned', 'queue-unavailable')),
    ended_at         BIGINT,
    CHECK (reason IS NULL OR status = 'unverified')
);

CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);

-- The customer directory: which person a caller number belongs to.
CREATE TABLE customers (
    id              TEXT PRIMARY KEY NOT NULL,
    display_name    TEXT,
    personal_number TEXT NOT NULL UNIQUE,        -- 12 digits; never copied to calls
    created_at      BIGINT NOT NULL
);

CREATE TABLE customer_numbers (
    e164        TEXT PRIMARY KEY NOT NULL,       -- one customer per number
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE
);

CREATE INDEX customer_numbers_customer_id ON customer_numbers (customer_id);
