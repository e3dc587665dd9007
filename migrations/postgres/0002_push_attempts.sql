-- Every push idgate sends (or refuses to send), for the anti push-bombing limits. Shared by
-- all instances through the database. The person is a pseudonym (SHA-256 of a fixed prefix and
-- the personal identity number), never the number itself.
CREATE TABLE push_attempts (
    id         TEXT PRIMARY KEY NOT NULL,
    call_id    TEXT NOT NULL,                  -- idgate's call id
    caller     TEXT,                           -- E.164 of the caller, NULL if anonymous
    person     TEXT,                           -- pseudonym of the person, NULL for phone pushes
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,                         -- NULL while the order runs
    outcome    TEXT                            -- verified, declined, not-in-call, timeout,
                                               -- rate-limited, provider-error, cancelled
);

CREATE INDEX push_attempts_caller ON push_attempts (caller, started_at);
CREATE INDEX push_attempts_person ON push_attempts (person, started_at);
