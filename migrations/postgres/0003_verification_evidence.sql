-- What a provider returned with a completed order (BankID: signature, OCSP response, device),
-- kept as evidence for the call's audit trail. Personal data: removed by the retention policy
-- with the call's other personal data.
CREATE TABLE verification_evidence (
    id          TEXT PRIMARY KEY NOT NULL,
    call_id     TEXT NOT NULL,                 -- idgate's call id
    method      TEXT NOT NULL,                 -- X-Identity-Method token
    recorded_at BIGINT NOT NULL,
    data        TEXT NOT NULL                  -- the provider's evidence, JSON
);

CREATE INDEX verification_evidence_call_id ON verification_evidence (call_id);
