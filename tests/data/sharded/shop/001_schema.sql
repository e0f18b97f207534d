CREATE TABLE customer (
  id BIGINT NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  city VARCHAR(32) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE corder (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  KEY (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE account (
  id BIGINT NOT NULL PRIMARY KEY,
  email VARCHAR(64) NOT NULL,
  city VARCHAR(32) NULL,
  UNIQUE KEY (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- member.handle has a consistent_lookup_unique vindex (lookup.member_handle_idx): a lookup
-- row left behind by a failed write is taken over by the next owner of its value.
CREATE TABLE member (
  id BIGINT NOT NULL PRIMARY KEY,
  handle VARCHAR(32) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
