-- bookd schema, version 3: indexes for per-order statements.
--
-- The saga's last transaction stores the idempotent response by order
-- (`UPDATE idempotency_keys ... WHERE order_id = $1`); without an index that was one
-- sequential scan of the whole table per order. Only rows made by order requests carry an
-- order id, so the index is partial.
CREATE INDEX idempotency_keys_by_order ON idempotency_keys (order_id) WHERE order_id IS NOT NULL;
