-- bookd schema, version 6: outbox rows name the history they belong to.
--
-- A searchd node resumes from the last outbox seq it applied. When this database is restored
-- from a backup, or a failover loses its newest commits, the outbox goes on from an older
-- head and the same seqs name other changes: bookd replayed only the seqs after the node's
-- and the node kept the lost history's seat counts for good. Now every outbox row carries a
-- `token`: a random, non-zero value the sequencer draws once per transaction and gives to
-- every row that transaction numbers, so a seq written again in another history has another
-- token. A node subscribes with the token of the newest row at or below its last applied
-- seq (protocol version 2, `format::wire`), and bookd replays only when its own row there
-- has that token; otherwise the node gets a full state.
--
-- `outbox_head.token` is the token of the head row and `outbox_pruned.token` the token of
-- the row at `through` (the newest one retention deleted), so the token at any retained
-- position is known even after retention deleted that row (after a quiet day it deletes
-- every row up to the head; nodes there still resume by replay).
-- Rows written before this version keep 0: they are one common history. (A constant
-- default: no table rewrite.)
ALTER TABLE outbox ADD COLUMN token bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox_head ADD COLUMN token bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox_pruned ADD COLUMN token bigint NOT NULL DEFAULT 0;
