-- bookd schema, version 4: inventory changes are sequenced after they commit.
--
-- Until now every inventory-changing transaction took the one row of `outbox_head` as its
-- last statement and kept it through its synchronous COMMIT: outbox seqs committed in
-- order, but so did all bookings, one WAL flush after the other (no group commit).
-- Now a booking transaction writes its changes here, in the same transaction as the
-- inventory change, and takes no shared lock. The sequencer (`bookd/src/sequencer.rs`)
-- moves committed rows to `outbox` in `id` order, numbering them from `outbox_head` under
-- its row lock in one transaction of its own: `outbox` keeps gap-free seqs that commit in
-- order and `outbox_head.seq` stays the watermark readers use.
CREATE TABLE outbox_pending (
    id               bigserial PRIMARY KEY,
    carrier          text NOT NULL,
    flight_number    integer NOT NULL,
    dep_date         date NOT NULL,
    origin           text NOT NULL,
    booking_class    text NOT NULL,
    seats_remaining  integer NOT NULL,
    reason           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
