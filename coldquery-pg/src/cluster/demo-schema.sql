-- ColdQuery's demo schema (a small shop): what `--ephemeral` loads (compiled into the binaries as
-- coldquery_pg::cluster::ephemeral::DEMO_SQL) and what the development stack (docker-compose.yml)
-- runs when its database is new. This file is the only copy.
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customers IS 'People who place orders.';
COMMENT ON COLUMN customers.country IS 'ISO 3166-1 alpha-2 country code.';

CREATE TABLE products (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    tags text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE products IS 'What the shop sells.';
COMMENT ON COLUMN products.price IS 'Current unit price in EUR.';

CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_placed_at_idx ON orders (placed_at);
COMMENT ON TABLE orders IS 'One order per checkout.';

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);
COMMENT ON TABLE order_items IS 'The lines of an order, with the price paid.';

CREATE VIEW order_totals AS
SELECT o.id AS order_id, c.name AS customer, o.status, o.placed_at,
       sum(i.quantity * i.unit_price) AS total
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items i ON i.order_id = o.id
GROUP BY o.id, c.name;
COMMENT ON VIEW order_totals IS 'Each order with its customer and total.';

INSERT INTO customers (email, name, country, created_at)
SELECT format('customer%s@example.com', n),
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'John', 'Margaret', 'Ken'])[1 + (n - 1) % 10]
       || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'McCarthy', 'Hamilton', 'Thompson'])[1 + (n * 3) % 10],
       (ARRAY['GB', 'US', 'DE', 'FR', 'JP'])[1 + n % 5],
       timestamptz '2024-01-01 09:00:00+00' + n * interval '3 days'
FROM generate_series(1, 20) AS n;

INSERT INTO products (sku, name, price, stock, tags) VALUES
    ('KB-001', 'Mechanical keyboard', 89.00, 25, '{hardware,input}'),
    ('MS-002', 'Wireless mouse', 29.50, 60, '{hardware,input}'),
    ('MN-003', '27-inch monitor', 249.99, 8, '{hardware,display}'),
    ('HD-004', 'USB-C hub', 39.90, 40, '{hardware}'),
    ('CB-005', 'Braided cable', 9.99, 200, '{accessory}'),
    ('ST-006', 'Laptop stand', 45.00, 15, '{accessory,ergonomics}'),
    ('HP-007', 'Headphones', 119.00, 12, '{audio}'),
    ('WC-008', 'Webcam', 69.00, 0, '{video}'),
    ('MP-009', 'Mouse pad', 12.00, 80, '{accessory}'),
    ('LP-010', 'Desk lamp', 34.75, 22, '{office}'),
    ('CH-011', 'Office chair', 299.00, 5, '{office,ergonomics}'),
    ('NB-012', 'Notebook', 4.50, 500, '{office,paper}');

INSERT INTO orders (customer_id, status, placed_at)
SELECT 1 + (n * 7) % 20,
       (ARRAY['pending', 'paid', 'shipped', 'shipped', 'cancelled'])[1 + n % 5],
       timestamptz '2025-01-01 10:00:00+00' + n * interval '1 day 3 hours'
FROM generate_series(1, 40) AS n;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + (o.id + k) % 4, p.price
FROM orders o
CROSS JOIN generate_series(0, 2) AS k
JOIN products p ON p.id = 1 + (o.id * 3 + k * 5) % 12;

ANALYZE;
