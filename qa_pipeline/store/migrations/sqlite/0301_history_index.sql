-- The dashboard's call history lists calls newest first (qa_pipeline.dashboard.history):
-- an index in that order, so a page reads its own calls only (NULL starts sort first
-- ascending, so last in the list's descending order).
CREATE INDEX calls_started ON calls (started_epoch, call_id);
