-- DML of the differential suite (tests/tests/differential.rs), run IN ORDER after the corpus,
-- first through the sidecar and then, only when the sidecar accepted it, on the unsharded
-- server, so that both keep the same data. Affected-row counts are compared for DML and
-- answers for SELECTs; each statement is followed by a SELECT that checks its effect.
-- One statement per line; `--` lines name the sections.
-- Ids reserved for this file (gen_data.py never generates them): customers 3000000001..
-- 3000000999 (and the missing small ids 4, 9, 11, 12, 13, 20, 2000), orders 900001..,
-- events 9000001...

-- INSERT a single row
INSERT INTO customers (id, name, email, city, country_code, balance, score, active, created) VALUES (3000000001, 'Dml One', 'dml1@example.com', 'Paris', 'FR', 10.00, 1, 1, '2024-01-01');
SELECT id, name, email, city, country_code, balance, score, active, created FROM customers WHERE id = 3000000001;
INSERT INTO customers (id, name) VALUES (4, 'Zoë Quatre');
SELECT id, name, email, balance, score, active, created FROM customers WHERE id = 4;
INSERT INTO customers (id, name, city) VALUES ('3000000020', 'quoted id', 'Nice');
SELECT id, name, city FROM customers WHERE id = 3000000020;
INSERT INTO customers (id, name, balance) VALUES (9223372036854775807, 'max bigint', 1.00);
SELECT id, name, balance FROM customers WHERE id = 9223372036854775807;

-- INSERT many rows in one statement (they land on different shards)
INSERT INTO customers (id, name, email, city, country_code, balance, score, active, created) VALUES (3000000002, 'Émile Deux', NULL, 'Lyon', 'FR', 0.00, NULL, 1, NULL), (3000000003, 'o''brien trois', 'trois@example.com', 'Wien', 'AT', -3.30, 3, 0, '2024-03-03'), (3000000004, 'STRASSE', 'vier@example.com', 'Köln', 'DE', 4.40, 4, 1, '2024-04-04'), (3000000005, '  five', NULL, NULL, NULL, 5.50, 5, 1, '2024-05-05'), (9, 'Nine', 'nine@example.com', 'Tokyo', 'JP', 9.00, 9, 1, '2024-09-09'), (11, 'Eleven', NULL, 'Lagos', 'NG', 11.00, NULL, 1, NULL), (12, 'zoe douze', 'douze@example.com', 'Paris', 'FR', 12.00, 12, 0, '2024-12-12'), (13, 'Ängel 13', NULL, 'Malmö', 'SE', 13.00, 13, 1, '2013-01-13');
SELECT id, name, email, city, country_code, balance, score, active, created FROM customers WHERE id IN (3000000002, 3000000003, 3000000004, 3000000005, 9, 11, 12, 13) ORDER BY id;
SELECT COUNT(*), SUM(balance) FROM customers;
INSERT INTO orders (id, customer_id, product_id, qty, price, status, note, created) VALUES (900001, 3000000001, 1, 1, 9.99, 'new', NULL, '2024-06-01 10:00:00'), (900002, 3000000001, 2, 2, 19.99, 'paid', 'gift', '2024-06-01 11:00:00'), (900003, 3000000002, 3, 3, 4.50, 'new', '', '2024-06-02 12:00:00'), (900004, 3000000003, 51, 4, 100.00, 'shipped', 'Lieferung später', '2024-06-03 13:00:00'), (900005, 9, 5, 5, 0.99, 'new', NULL, '2024-06-04 14:00:00'), (900006, 11, 6, 6, 5.00, 'paid', NULL, '2024-06-05 15:00:00'), (900007, 12, 7, 7, 1.00, 'new', 'urgent', '2024-06-06 16:00:00'), (900008, 5, 8, 8, 33.33, 'new', NULL, '2024-06-07 17:00:00');
SELECT id, customer_id, product_id, qty, price, status, note, created FROM orders WHERE id >= 900001 ORDER BY id;
SELECT customer_id, COUNT(*), SUM(qty * price) FROM orders WHERE customer_id IN (3000000001, 3000000002, 3000000003, 9, 11, 12, 5) GROUP BY customer_id;
INSERT INTO events (id, customer_id, kind, payload) VALUES (9000001, 3000000001, 'login', 'page=/home'), (9000002, 3000000002, 'view', NULL), (9000003, 9, NULL, '{"k": 9}'), (9000004, 42, 'click', 'ÄÖÜ'), (9000005, 4294967296, 'purchase', '');
SELECT id, customer_id, kind, payload FROM events WHERE id >= 9000001 ORDER BY id;
SELECT COUNT(*) FROM events;
INSERT INTO orders (id, customer_id, product_id, qty, price, status, note, created) VALUES (900009, 3000000004, 4, 1, 12.30, 'new', 'O''Hara', '2024-06-09 09:00:00');
SELECT id, customer_id, note FROM orders WHERE customer_id = 3000000004;

-- INSERT IGNORE on a duplicate
INSERT IGNORE INTO customers (id, name) VALUES (3000000001, 'duplicate');
SELECT id, name FROM customers WHERE id = 3000000001;
INSERT IGNORE INTO customers (id, name, city) VALUES (3000000001, 'duplicate again', 'Lyon'), (3000000006, 'Six', 'Lyon'), (5, 'not Zoë', 'Lyon');
SELECT id, name, city FROM customers WHERE id IN (3000000001, 3000000006, 5);
INSERT IGNORE INTO orders (id, customer_id, product_id, qty, price, status, created) VALUES (900001, 3000000001, 9, 9, 9.00, 'dup', '2024-06-09 09:00:00');
SELECT id, product_id, status FROM orders WHERE id = 900001;

-- INSERT ... ON DUPLICATE KEY UPDATE
INSERT INTO customers (id, name, balance) VALUES (3000000001, 'ignored', 1.00) ON DUPLICATE KEY UPDATE balance = balance + 5;
SELECT id, name, balance FROM customers WHERE id = 3000000001;
INSERT INTO customers (id, name, balance) VALUES (3000000007, 'Seven', 7.00) ON DUPLICATE KEY UPDATE balance = balance + 5;
SELECT id, name, balance FROM customers WHERE id = 3000000007;
INSERT INTO customers (id, name, score) VALUES (3000000001, 'x', 101), (3000000008, 'Eight', 8), (42, 'x', 4242) ON DUPLICATE KEY UPDATE score = VALUES(score);
SELECT id, name, score FROM customers WHERE id IN (3000000001, 3000000008, 42);
INSERT INTO customers (id, name, city) VALUES (3000000008, 'Eight', 'Wien') ON DUPLICATE KEY UPDATE city = city;
SELECT id, city FROM customers WHERE id = 3000000008;
REPLACE INTO customers (id, name, city, balance) VALUES (3000000006, 'Six replaced', 'Bogotá', 66.00);
SELECT id, name, city, balance, score, active FROM customers WHERE id = 3000000006;

-- UPDATE by the vindex column
UPDATE customers SET balance = balance + 1 WHERE id = 5;
SELECT id, balance FROM customers WHERE id = 5;
UPDATE customers SET city = 'Zürich' WHERE id = 5;
SELECT id, city FROM customers WHERE id = 5;
UPDATE customers SET name = 'Zoë Müller', email = NULL WHERE id = 4294967296;
SELECT id, name, email FROM customers WHERE id = 4294967296;
UPDATE customers SET score = 0 WHERE id IN (1, 3, 99, 3000000002);
SELECT id, score FROM customers WHERE id IN (1, 3, 99, 3000000002) ORDER BY id;
UPDATE customers SET email = LOWER(CONCAT(TRIM(name), '@example.org')) WHERE id IN (3000000004, 3000000005, 13);
SELECT id, email FROM customers WHERE id IN (3000000004, 3000000005, 13) ORDER BY id;
SELECT id, name FROM customers WHERE email = 'strasse@example.org';
UPDATE orders SET status = 'shipped' WHERE customer_id IN (9, 11, 12) AND status = 'new';
SELECT id, customer_id, status FROM orders WHERE customer_id IN (9, 11, 12) ORDER BY id;
UPDATE orders SET status = 'paid' WHERE customer_id = 42 AND status = 'new';
SELECT status, COUNT(*) FROM orders WHERE customer_id = 42 GROUP BY status;
UPDATE orders SET price = price * 2, note = CONCAT(COALESCE(note, ''), ' x2') WHERE customer_id = 10;
SELECT id, price, note FROM orders WHERE customer_id = 10 ORDER BY id;
UPDATE events SET payload = 'seen' WHERE customer_id = 5 AND kind = 'view';
SELECT kind, payload, COUNT(*) FROM events WHERE customer_id = 5 GROUP BY kind, payload;
UPDATE customers SET score = score + 1 WHERE id = 12345678;
SELECT COUNT(*) FROM customers WHERE id = 12345678;

-- UPDATE with a scatter WHERE
UPDATE orders SET status = 'x' WHERE qty > 40;
SELECT status, COUNT(*) FROM orders GROUP BY status;
UPDATE customers SET active = 0 WHERE city = 'Reykjavík';
SELECT id, active FROM customers WHERE city = 'Reykjavík' ORDER BY id;
UPDATE orders SET note = NULL WHERE note = '';
SELECT COUNT(*), COUNT(note) FROM orders;
UPDATE customers SET name = 'Émile Zola' WHERE name = 'emile' AND city = 'Paris';
SELECT id, name FROM customers WHERE city = 'Paris' AND name LIKE '%mile%' ORDER BY id;
UPDATE customers SET balance = balance - 0.01 WHERE balance > 9000 AND active = 1;
SELECT COUNT(*), SUM(balance) FROM customers WHERE balance > 8999;
UPDATE orders SET qty = 0 WHERE qty > 1000;
SELECT MAX(qty) FROM orders;
UPDATE events SET kind = 'click' WHERE kind = 'click';
SELECT kind, COUNT(*) FROM events GROUP BY kind;

-- DELETE by the vindex column and by IN-lists
DELETE FROM events WHERE customer_id = 1;
SELECT COUNT(*) FROM events WHERE customer_id = 1;
DELETE FROM orders WHERE customer_id = 3 AND qty < 5;
SELECT id, qty FROM orders WHERE customer_id = 3 ORDER BY id;
DELETE FROM customers WHERE id IN (3000000002, 3000000003, 9);
SELECT id FROM customers WHERE id IN (3000000002, 3000000003, 9, 3000000004) ORDER BY id;
DELETE FROM orders WHERE id IN (115, 1988, 639, 900005);
SELECT COUNT(*) FROM orders WHERE id IN (115, 1988, 639, 900005);
DELETE FROM orders WHERE customer_id IN (11, 12);
SELECT COUNT(*) FROM orders WHERE customer_id IN (9, 11, 12);
DELETE FROM customers WHERE id = 3000000999;
SELECT COUNT(*) FROM customers;

-- DELETE with a scatter WHERE
DELETE FROM events WHERE kind = 'refund';
SELECT COUNT(*) FROM events WHERE kind = 'refund';
DELETE FROM orders WHERE status = 'cancelled' AND created < '2021-01-01';
SELECT status, COUNT(*) FROM orders GROUP BY status;
DELETE FROM events WHERE payload IS NULL AND kind IS NULL;
SELECT COUNT(*) FROM events;

-- owner tables of lookup vindexes (orders.id, customers.email), read back through the lookups
UPDATE customers SET email = 'moved@example.com' WHERE id = 42;
SELECT id, email FROM customers WHERE email = 'moved@example.com';
UPDATE customers SET email = 'shared@example.com' WHERE id IN (3000000001, 3000000003);
SELECT id FROM customers WHERE email = 'shared@example.com' ORDER BY id;
DELETE FROM customers WHERE id = 3000000003;
SELECT id FROM customers WHERE email = 'shared@example.com' ORDER BY id;
UPDATE customers SET email = NULL WHERE email = 'moved@example.com';
SELECT COUNT(*) FROM customers WHERE email = 'moved@example.com';
INSERT INTO orders (id, customer_id, product_id, qty, price, status, note, created) VALUES (900101, 42, 3, 2, 9.99, 'paid', NULL, '2024-06-01 10:00:00'), (900102, 5, 4, 1, 1.00, 'paid', 'x', '2024-06-02 10:00:00');
SELECT id, customer_id, qty FROM orders WHERE id IN (900101, 900102) ORDER BY id;
UPDATE orders SET qty = 99 WHERE id = 14588;
SELECT id, qty FROM orders WHERE id = 14588;
DELETE FROM orders WHERE id = 900101;
SELECT COUNT(*) FROM orders WHERE id IN (900101, 900102);
INSERT IGNORE INTO orders (id, customer_id, product_id, qty, price, status, note, created) VALUES (14588, 42, 1, 1, 1.00, 'paid', 'dup', '2024-06-03 10:00:00'), (900103, 42, 1, 1, 1.00, 'paid', 'new', '2024-06-03 10:00:00');
SELECT id, customer_id, note FROM orders WHERE id IN (14588, 900103) ORDER BY id;
SELECT COUNT(*) FROM orders WHERE customer_id = 42 AND note = 'dup';

-- transactions
BEGIN;
INSERT INTO customers (id, name) VALUES (3000000010, 'rolled back');
UPDATE customers SET balance = 0 WHERE id = 42;
ROLLBACK;
SELECT id, balance FROM customers WHERE id IN (3000000010, 42) ORDER BY id;
BEGIN;
UPDATE customers SET balance = balance - 100 WHERE id = 5;
UPDATE customers SET balance = balance + 100 WHERE id = 42;
COMMIT;
SELECT id, balance FROM customers WHERE id IN (5, 42) ORDER BY id;

-- the unsharded keyspace
INSERT INTO products (id, name, category, price, stock) VALUES (51, 'Nouveau', 'tools', 51.00, 5);
UPDATE products SET stock = stock - 1 WHERE category = 'tools';
SELECT id, stock FROM products WHERE category = 'tools' ORDER BY id;
DELETE FROM products WHERE id = 50;
SELECT COUNT(*), SUM(price) FROM products;

-- statements a Vitess-like router refuses or must treat with care
UPDATE customers SET id = id + 1 WHERE id = 3000000008;
SELECT id, name FROM customers WHERE id IN (3000000008, 3000000009) ORDER BY id;
UPDATE orders SET customer_id = 7 WHERE id = 19877;
SELECT id, customer_id FROM orders WHERE id = 19877;
SELECT COUNT(*) FROM orders WHERE customer_id = 7;
UPDATE orders SET qty = qty + 1 WHERE customer_id = 5 ORDER BY id LIMIT 3;
SELECT id, qty FROM orders WHERE customer_id = 5 ORDER BY id LIMIT 5;
DELETE FROM events WHERE kind = 'view' ORDER BY id LIMIT 5;
SELECT COUNT(*) FROM events WHERE kind = 'view';
UPDATE customers c JOIN orders o ON o.customer_id = c.id SET c.score = c.score + 1 WHERE c.id = 42 AND o.id = 313;
SELECT id, score FROM customers WHERE id = 42;
DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE city = 'Nice');
SELECT COUNT(*) FROM orders;
INSERT INTO customers (id, name, city) SELECT id + 1000000000000000000, name, city FROM customers WHERE id IN (1, 5, 42);
SELECT id, name, city FROM customers WHERE id > 1000000000000000000 ORDER BY id;
INSERT INTO countries (code, name, continent) VALUES ('QQ', 'Qatarland', 'Asia');
SELECT code, name FROM countries WHERE code = 'QQ';
SELECT c.id, k.name FROM customers c JOIN countries k ON k.code = c.country_code WHERE c.id = 5;

-- final state
SELECT COUNT(*), SUM(balance), SUM(score), MIN(id), MAX(id) FROM customers;
SELECT COUNT(*), SUM(qty), SUM(qty * price) FROM orders;
SELECT COUNT(*), COUNT(kind), COUNT(payload) FROM events;
SELECT id, name, city, balance FROM customers WHERE id >= 3000000000 ORDER BY id;
