-- A re-score's run promoted to count (qa-pipeline store promote): its role becomes 'active'
-- and the run keeps who promoted it, when (UTC epoch seconds) and the role it had before
-- ('new' or 'baseline'); NULL for runs that were active from the start (the pack in service).
ALTER TABLE runs ADD COLUMN promoted_by TEXT;
ALTER TABLE runs ADD COLUMN promoted_at DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN promoted_from TEXT;
