-- A call's recording: where its audio file is (a path on the host that wrote it), its
-- rate, channels and length, and whether personal data in it was beeped or silenced
-- (redacted = 1) or it is the audio as received (0: the dashboard does not play it).
-- Written with the call (serve at the call's end, score with the call's row); removed with
-- its file by the retention purge's audio kind (age: created_at).
CREATE TABLE recordings (
    call_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    duration_s DOUBLE PRECISION NOT NULL,
    redacted INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX recordings_created ON recordings (created_at);
