-- "Verify again": re-verifications agents asked for while talking to a caller, for the call's
-- audit trail. Like `calls`, the result columns never hold the person: the push itself is in
-- push_attempts (as a pseudonym) and a completed order's evidence in verification_evidence.
CREATE TABLE reverifications (
    id           TEXT PRIMARY KEY NOT NULL,
    call_id      TEXT NOT NULL,               -- idgate's call id
    requested_by TEXT NOT NULL,               -- the agent's user name, or 'token'
    requested_at BIGINT NOT NULL,
    completed_at BIGINT,
    status       TEXT CHECK (status IN ('verified', 'unverified')),
    reason       TEXT,                        -- X-Identity-Reason token, when unverified
    method       TEXT,
    CHECK (reason IS NULL OR status = 'unverified')
);

CREATE INDEX reverifications_call_id ON reverifications (call_id);
