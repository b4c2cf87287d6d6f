-- The demo's shop schema, created on every shard (also mounted into the
-- postgres containers of docker-compose.yml). Idempotent.
CREATE TABLE IF NOT EXISTS customers (
    customer_id bigint PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS products (
    product_id bigint PRIMARY KEY,
    name text NOT NULL,
    price numeric(12,2) NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    product_id bigint NOT NULL,
    quantity integer NOT NULL,
    total numeric(12,2) NOT NULL,
    status text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, order_id)
);
CREATE TABLE IF NOT EXISTS payments (
    payment_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    order_id bigint NOT NULL,
    amount numeric(12,2) NOT NULL,
    method text NOT NULL,
    paid_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, payment_id)
);
