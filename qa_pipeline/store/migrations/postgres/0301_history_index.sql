-- The dashboard's call history lists calls newest first (qa_pipeline.dashboard.history):
-- an index in that order (calls of unknown start last), so a page reads its own calls only.
CREATE INDEX calls_started ON calls (started_epoch DESC NULLS LAST, call_id DESC);
