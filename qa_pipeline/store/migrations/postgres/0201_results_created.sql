-- The dashboard scans the store for calls due for review every minute
-- (qa_pipeline.review.repo.scan): after its first scan, only the calls with a result
-- written since the last one (results.created_at), found through this index.
CREATE INDEX results_created ON results (created_at);
