-- bookd schema, version 2: outbox sequence numbers that commit in order.
--
-- A bigserial hands out numbers at INSERT time, so transactions can commit out of seq order
-- and a reader could see seq 8 before seq 7 exists. From now on every transaction that
-- changes inventory allocates its outbox seqs from the single row of `outbox_head`
-- (`UPDATE outbox_head SET seq = seq + n RETURNING seq`) right before COMMIT: the row lock
-- serialises those last steps, so outbox seqs become visible in seq order, without holes,
-- and `outbox_head.seq` is a watermark (every change at or below it is visible).

CREATE TABLE outbox_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL CHECK (seq >= 0)
);
INSERT INTO outbox_head (seq) SELECT COALESCE(max(seq), 0) FROM outbox;

-- Retention: rows at or below `through` may have been deleted (kept apart from
-- outbox_head so that pruning never takes the bookings' lock).
CREATE TABLE outbox_pruned (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    through  bigint NOT NULL CHECK (through >= 0)
);
INSERT INTO outbox_pruned (through) VALUES (0);

-- Seqs come from outbox_head only.
ALTER TABLE outbox ALTER COLUMN seq DROP DEFAULT;

-- The seq of each leg class's last change (the full state sends it with the seats).
ALTER TABLE inventory ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
UPDATE inventory i SET last_seq = o.last
FROM (SELECT carrier, flight_number, dep_date, origin, booking_class, max(seq) AS last
      FROM outbox GROUP BY carrier, flight_number, dep_date, origin, booking_class) o
WHERE i.carrier = o.carrier AND i.flight_number = o.flight_number AND i.dep_date = o.dep_date
  AND i.origin = o.origin AND i.booking_class = o.booking_class;
