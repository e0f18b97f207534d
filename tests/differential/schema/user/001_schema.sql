-- Sharded keyspace `user` (4 shards in the differential suite). This file is applied to
-- every shard, so it holds only DDL; the reference table's rows are in 002_reference_data.sql
-- and the sharded tables' rows are loaded through the sidecar from ../../data.sql.
--
-- Vindexes (see ../../vschema.json): customers by hash(id); orders and events by
-- hash(customer_id), so a customer's orders and events live on the customer's shard.
-- countries is a reference table: a full, identical copy on every shard.

CREATE TABLE customers (
  id BIGINT NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  email VARCHAR(128),
  city VARCHAR(64),
  country_code CHAR(2),
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  score INT NULL,
  active TINYINT NOT NULL DEFAULT 1,
  created DATE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE orders (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  product_id INT NOT NULL,
  qty INT NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  note VARCHAR(100) NULL,
  created DATETIME NOT NULL,
  KEY (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE events (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  kind VARCHAR(16),
  payload VARCHAR(255),
  KEY (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE countries (
  code CHAR(2) NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  continent VARCHAR(16) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
