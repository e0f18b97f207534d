CREATE TABLE customer_seq (id BIGINT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT INTO customer_seq (id, next_id, cache) VALUES (0, 1000, 10);
CREATE TABLE account_email_idx (email VARCHAR(64) NOT NULL PRIMARY KEY, keyspace_id VARBINARY(16) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE account_city_idx (city VARCHAR(32) NOT NULL, account_id BIGINT UNSIGNED NOT NULL, PRIMARY KEY (city, account_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE member_handle_idx (handle VARCHAR(32) NOT NULL PRIMARY KEY, keyspace_id VARBINARY(16) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
