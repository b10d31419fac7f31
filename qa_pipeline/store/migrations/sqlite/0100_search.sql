-- Full-text search over the calls' transcripts (qa_pipeline/store/search.py says why this
-- form): one FTS5 row per call holding its utterances' unigrams and bigrams as pre-cut
-- token strings, and the call's filter columns copied beside it (kept by search.sync_index).
CREATE TABLE IF NOT EXISTS search_calls (
    call_key INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL UNIQUE,
    agent_id TEXT,
    team TEXT,
    direction TEXT,
    started_epoch REAL,
    run_id TEXT,   -- the current result of the call (Store.current_results)
    score REAL
);
CREATE INDEX IF NOT EXISTS search_calls_agent ON search_calls (agent_id, started_epoch);
CREATE INDEX IF NOT EXISTS search_calls_team ON search_calls (team, started_epoch);
CREATE INDEX IF NOT EXISTS search_calls_direction ON search_calls (direction, started_epoch);
CREATE INDEX IF NOT EXISTS search_calls_started ON search_calls (started_epoch);
CREATE INDEX IF NOT EXISTS search_calls_score ON search_calls (score);
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
    uni, bi, columnsize = 0, tokenize = 'unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE IF NOT EXISTS search_vocab USING fts5vocab(search_fts, 'row');
-- calls changed since indexed: text = 1 when their utterances changed (re-cut), 0 when
-- only their metadata or results did (filter columns refreshed)
CREATE TABLE IF NOT EXISTS search_dirty (
    call_id TEXT PRIMARY KEY,
    text INTEGER NOT NULL
) WITHOUT ROWID;
-- (a trigger body keeps its inner ';' off the end of a line: the migration runner splits
-- statements at a ';' that ends a line)
CREATE TRIGGER IF NOT EXISTS search_utt_ins AFTER INSERT ON utterances BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 1)
        ON CONFLICT (call_id) DO UPDATE SET text = 1; END;
CREATE TRIGGER IF NOT EXISTS search_utt_upd_old AFTER UPDATE ON utterances BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (old.call_id, 1)
        ON CONFLICT (call_id) DO UPDATE SET text = 1; END;
CREATE TRIGGER IF NOT EXISTS search_utt_upd_new AFTER UPDATE ON utterances BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 1)
        ON CONFLICT (call_id) DO UPDATE SET text = 1; END;
CREATE TRIGGER IF NOT EXISTS search_utt_del AFTER DELETE ON utterances BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (old.call_id, 1)
        ON CONFLICT (call_id) DO UPDATE SET text = 1; END;
CREATE TRIGGER IF NOT EXISTS search_calls_ins AFTER INSERT ON calls BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
CREATE TRIGGER IF NOT EXISTS search_calls_upd AFTER UPDATE ON calls BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
CREATE TRIGGER IF NOT EXISTS search_calls_del AFTER DELETE ON calls BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (old.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
CREATE TRIGGER IF NOT EXISTS search_results_ins AFTER INSERT ON results BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
CREATE TRIGGER IF NOT EXISTS search_results_upd AFTER UPDATE ON results BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (new.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
CREATE TRIGGER IF NOT EXISTS search_results_del AFTER DELETE ON results BEGIN
    INSERT INTO search_dirty (call_id, text) VALUES (old.call_id, 0)
        ON CONFLICT (call_id) DO NOTHING; END;
-- calls stored before this migration
INSERT OR IGNORE INTO search_dirty (call_id, text) SELECT call_id, 1 FROM calls;
