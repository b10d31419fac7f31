-- The store's schema as it was before numbered migrations (schema v1, the ``meta`` table):
-- a store written then is adopted as 0001 (every statement here is IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    settings_hash TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transcripts (
    audio_sha256 TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    call_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (audio_sha256, settings_hash)
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    audio_sha256 TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    source TEXT,
    started_at TEXT,
    agent_id TEXT,
    call TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pack_name TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    role TEXT NOT NULL,
    inputs TEXT NOT NULL,
    args TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    transcript_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    score REAL,
    grade TEXT,
    failed INTEGER,
    failed_rules TEXT,
    findings TEXT,
    verdicts TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, call_id)
);
CREATE INDEX IF NOT EXISTS results_call_id ON results (call_id);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
