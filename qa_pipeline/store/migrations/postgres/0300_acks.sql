-- Alert acknowledgements of the dashboard (qa_pipeline.dashboard.history.StoreAckStore):
-- who acknowledged which alert (its event id) and when (UTC epoch seconds); the first one
-- of an alert stands (its event id is the key).
CREATE TABLE alert_acks (
    event_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
