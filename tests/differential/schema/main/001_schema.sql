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
