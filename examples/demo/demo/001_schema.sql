-- The demo keyspace, sharded by user: people rate dogs (every dog is at least a 10/10, but
-- some are 13/10). Applied to every shard. Users are sharded by id, dogs by their owner and
-- ratings by the user who rates, so a user's dogs and ratings live on the user's shard;
-- ids come from the sequences in keyspace `lookup` (vschema.json).
CREATE TABLE users (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  email VARCHAR(255) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uk_users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE dogs (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  owner_id BIGINT UNSIGNED NOT NULL,
  name VARCHAR(64) NOT NULL,
  breed VARCHAR(64) NOT NULL,
  born DATE NULL,
  KEY idx_dogs_owner (owner_id),
  CONSTRAINT fk_dogs_owner FOREIGN KEY (owner_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE ratings (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  dog_id BIGINT UNSIGNED NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  score TINYINT UNSIGNED NOT NULL,
  comment VARCHAR(255) NULL,
  rated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uk_ratings_dog_user (dog_id, user_id),
  KEY idx_ratings_user (user_id),
  CONSTRAINT fk_ratings_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT ck_ratings_score CHECK (score BETWEEN 10 AND 14)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
