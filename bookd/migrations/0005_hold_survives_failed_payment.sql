-- bookd schema, version 5: a hold survives a payment that failed before any charge.
--
-- Until now an order from a hold consumed it: a declined card released the hold's seats,
-- and the client had to search and hold again, perhaps at a higher price. Now the seats go
-- back to the hold (until it expires), so the client can pay again with another card. A
-- hold may then have several orders, of which at most one has not failed.
ALTER TABLE orders DROP CONSTRAINT orders_hold_id_key;
CREATE UNIQUE INDEX orders_one_live_order_per_hold ON orders (hold_id) WHERE status <> 'failed';

-- Instant orders (offer + passengers + payment in one call) write a hold row too, already
-- `ordered`; when their payment fails their seats go back on sale, not to a hold nobody
-- can see. Rows written before this version are all final, so the default only matters
-- for new rows.
ALTER TABLE holds ADD COLUMN instant boolean NOT NULL DEFAULT false;
