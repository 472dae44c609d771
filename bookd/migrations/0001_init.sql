-- bookd schema, version 1. Times written by bookd's clock are epoch milliseconds
-- (`*_ms`, so `--now` replays stay consistent); times written by the database are timestamptz.

CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),   -- sha256 of the key
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Seats per dated leg and booking class. `capacity` is the snapshot's availability when the
-- row is first needed; every hold, order, cancellation and expiry changes sold/held in the
-- same transaction as its booking row.
CREATE TABLE inventory (
    carrier        text NOT NULL,
    flight_number  integer NOT NULL,
    dep_date       date NOT NULL,          -- local departure date at origin
    origin         text NOT NULL,
    booking_class  text NOT NULL,
    capacity       integer NOT NULL CHECK (capacity >= 0),
    sold           integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    held           integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (carrier, flight_number, dep_date, origin, booking_class),
    CONSTRAINT inventory_not_oversold CHECK (sold + held <= capacity)
);

CREATE TABLE holds (
    id              text PRIMARY KEY,
    api_key_id      bigint NOT NULL REFERENCES api_keys (id),
    offer_id        text NOT NULL,
    -- held: seats held for this hold; ordered: seats passed to its order;
    -- expired/released: seats returned to sale
    status          text NOT NULL CHECK (status IN ('held', 'ordered', 'expired', 'released')),
    seats           integer NOT NULL CHECK (seats >= 0),
    legs            text NOT NULL,        -- JSON array of legs (no personal data)
    adults          smallint NOT NULL,
    children        smallint NOT NULL,
    infants         smallint NOT NULL,
    price_minor     bigint NOT NULL,
    currency        text NOT NULL,
    refundable      boolean NOT NULL,
    passengers_enc  bytea NOT NULL,       -- AEAD(passengers + contact), aad = hold id
    created_ms      bigint NOT NULL,
    expires_ms      bigint NOT NULL
);
CREATE INDEX holds_expiring ON holds (expires_ms) WHERE status = 'held';

CREATE TABLE orders (
    seq                bigserial NOT NULL UNIQUE,  -- cursor pagination order
    id                 text PRIMARY KEY,
    api_key_id         bigint NOT NULL REFERENCES api_keys (id),
    hold_id            text NOT NULL UNIQUE REFERENCES holds (id),
    offer_id           text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed', 'cancelled')),
    -- the saga's persisted step: seats_held -> payment_charged -> confirmed;
    -- compensating -> compensated on failure; cancelling -> cancelled after a cancel
    saga_step          text NOT NULL CHECK (saga_step IN ('seats_held', 'payment_charged', 'confirmed',
                                     'compensating', 'compensated', 'cancelling', 'cancelled')),
    seats              integer NOT NULL,
    price_minor        bigint NOT NULL,
    currency           text NOT NULL,
    refundable         boolean NOT NULL,
    booking_reference  text,
    refund_minor       bigint,
    failure_code       text,
    seats_released     boolean NOT NULL DEFAULT false,
    contact_enc        bytea NOT NULL,    -- AEAD(contact), aad = order id
    created_ms         bigint NOT NULL,
    updated_ms         bigint NOT NULL
);
CREATE INDEX orders_by_key ON orders (api_key_id, seq);
CREATE INDEX orders_in_flight ON orders (seq) WHERE saga_step NOT IN ('confirmed', 'compensated', 'cancelled');

CREATE TABLE order_segments (
    order_id       text NOT NULL REFERENCES orders (id),
    idx            smallint NOT NULL,
    carrier        text NOT NULL,
    flight_number  integer NOT NULL,
    dep_date       date NOT NULL,
    origin         text NOT NULL,
    destination    text NOT NULL,
    booking_class  text NOT NULL,
    PRIMARY KEY (order_id, idx)
);

CREATE TABLE passengers (
    order_id        text NOT NULL REFERENCES orders (id),
    idx             smallint NOT NULL,
    passenger_type  text NOT NULL CHECK (passenger_type IN ('adult', 'child', 'infant')),
    data_enc        bytea NOT NULL,       -- AEAD(names, born_on), aad = order id/idx
    PRIMARY KEY (order_id, idx)
);

CREATE TABLE payments (
    id                 bigserial PRIMARY KEY,
    order_id           text NOT NULL REFERENCES orders (id),
    kind               text NOT NULL CHECK (kind IN ('charge', 'refund')),
    idempotency_key    text NOT NULL UNIQUE,   -- passed to the gateway
    amount_minor       bigint NOT NULL,
    currency           text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined', 'not_charged', 'failed')),
    gateway_reference  text,
    created_ms         bigint NOT NULL,
    updated_ms         bigint NOT NULL,
    UNIQUE (order_id, kind)
);

CREATE TABLE idempotency_keys (
    api_key_id       bigint NOT NULL REFERENCES api_keys (id),
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    status           text NOT NULL CHECK (status IN ('in_progress', 'done')),
    response_status  integer,
    response_body    text,
    order_id         text,
    created_ms       bigint NOT NULL,
    PRIMARY KEY (api_key_id, key)
);

-- Every inventory change, in sequence, for the invalidation channel.
CREATE TABLE outbox (
    seq              bigserial PRIMARY KEY,
    carrier          text NOT NULL,
    flight_number    integer NOT NULL,
    dep_date         date NOT NULL,
    origin           text NOT NULL,
    booking_class    text NOT NULL,
    seats_remaining  integer NOT NULL,
    reason           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Append-only: who did what, when.
CREATE TABLE audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text,
    detail   text
);
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END
$$;
CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The simulated payment gateway's and airline's own durable state (they stand for remote
-- systems; the real adapters keep nothing here).
CREATE TABLE sim_gateway_ledger (
    idempotency_key  text PRIMARY KEY,
    kind             text NOT NULL,
    amount_minor     bigint NOT NULL,
    currency         text NOT NULL,
    reference        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sim_airline_bookings (
    idempotency_key  text PRIMARY KEY,
    locator          text NOT NULL,
    cancelled        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);
