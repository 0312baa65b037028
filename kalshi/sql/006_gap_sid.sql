-- A gap's identity includes its subscription: two gaps on different sids of one connection
-- whose previous frames share a receive microsecond are two gaps (issue 17: a real capture
-- reported 894 521 gaps and stored 739 847 under the old key).
DROP INDEX IF EXISTS gaps_identity;
CREATE UNIQUE INDEX gaps_identity
    ON gaps (start_ts, gatherer_id, conn_id, (COALESCE(sid, 0)), kind, (COALESCE(ticker, '')));
