-- Unsharded keyspace `main`: the product catalogue (passed through whole) and the Vitess
-- sequence table for customer ids. Rows of products are in 002_data.sql.

CREATE TABLE products (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  category VARCHAR(32),
  price DECIMAL(10,2) NOT NULL,
  stock INT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE customer_seq (
  id BIGINT,
  next_id BIGINT,
  cache BIGINT,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT 'vitess_sequence';

INSERT INTO customer_seq (id, next_id, cache) VALUES (0, 100000, 100);

-- Lookup vindexes of keyspace `user` (see ../../vschema.json), kept by the sidecar as the
-- owner tables change: which customer (so which shard) holds each order id, and which
-- customers hold each email (non-unique: 'shared@example.com' belongs to many).
CREATE TABLE orders_id_idx (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE customers_email_idx (
  email VARCHAR(128) NOT NULL,
  customer_id BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (email, customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
