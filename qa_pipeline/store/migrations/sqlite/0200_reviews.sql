-- Review and appeal (qa_pipeline/review): the queue, every review or appeal as a new
-- version (never updated in place), each version's per-verdict decisions, and the latest
-- reviewed score of each call (call_reviews), which counts over the machine score.
-- Times are UTC epoch seconds; verdict sets are JSON objects {rule_id: [verdict,
-- deduction, pending_deduction]}.

CREATE TABLE review_queue (
    call_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,            -- the machine result under review
    state TEXT NOT NULL,             -- open | in_review | done
    reasons TEXT NOT NULL,           -- JSON list: uncertain, critical, low_score, appeal
    pending_rules TEXT NOT NULL,     -- JSON list: rules that still need a decision
    machine_score REAL,
    assignee TEXT,
    entered_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX review_queue_state ON review_queue (state, entered_at);

CREATE TABLE review_versions (
    call_id TEXT NOT NULL,
    version INTEGER NOT NULL,        -- 1, 2, ... per call
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,              -- review | appeal
    actor TEXT NOT NULL,             -- the reviewer, or the agent who appealed
    recorded_at REAL NOT NULL,
    why TEXT NOT NULL,               -- the reviewer's comments, or the appeal's reason
    pack_name TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    verdicts_before TEXT NOT NULL,
    verdicts_after TEXT NOT NULL,
    score REAL NOT NULL,             -- of verdicts_after
    grade TEXT NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (call_id, version)
);
CREATE INDEX review_versions_at ON review_versions (recorded_at);

CREATE TABLE review_decisions (
    call_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    action TEXT NOT NULL,            -- confirm | overturn | appeal
    verdict_before TEXT NOT NULL,
    verdict_after TEXT NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (call_id, version, rule_id)
);
CREATE INDEX review_decisions_rule ON review_decisions (rule_id, action);

-- the latest reviewed score of each call (what Store.current_results counts over the
-- machine score): written with each review version, in its transaction (an appeal does not
-- touch it)
CREATE TABLE call_reviews (
    call_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    score REAL NOT NULL,
    grade TEXT NOT NULL,
    failed INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at REAL NOT NULL
);
