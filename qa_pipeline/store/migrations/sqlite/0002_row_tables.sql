-- Verdicts, findings and utterances as rows (indexable, filterable), the calls' filter
-- columns, results' complete/review flags. Filled from the JSON columns of what is stored
-- by the migration's Python part (qa_pipeline.store.base.backfill), in this transaction.
ALTER TABLE calls ADD COLUMN team TEXT;
ALTER TABLE calls ADD COLUMN direction TEXT;
ALTER TABLE calls ADD COLUMN started_epoch REAL;
ALTER TABLE calls ADD COLUMN duration_s REAL;
CREATE INDEX calls_agent_started ON calls (agent_id, started_epoch);
CREATE INDEX calls_team_started ON calls (team, started_epoch);
ALTER TABLE results ADD COLUMN complete INTEGER;
ALTER TABLE results ADD COLUMN review INTEGER;
CREATE TABLE verdicts (
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    verdict TEXT NOT NULL,  -- passed | failed | not_applicable | uncertain
    severity TEXT,
    deduction REAL,
    pending_deduction REAL,
    PRIMARY KEY (run_id, call_id, rule_id)
);
CREATE INDEX verdicts_rule_verdict ON verdicts (rule_id, verdict);
CREATE INDEX verdicts_call ON verdicts (call_id);
CREATE TABLE findings (
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT,
    message TEXT,
    utterance_index INTEGER,
    start_s REAL,
    end_s REAL,
    matched TEXT,
    PRIMARY KEY (run_id, call_id, seq)
);
CREATE INDEX findings_rule ON findings (rule_id);
CREATE TABLE utterances (
    call_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel INTEGER,
    role TEXT,
    start_s REAL,
    end_s REAL,
    text TEXT NOT NULL,  -- redacted, normalised
    PRIMARY KEY (call_id, idx)
);
-- the pack in service: what 'qa-pipeline score --store' and live services recorded
UPDATE runs SET role = 'active' WHERE role = 'score';
