-- Vitess-style sequence tables for the demo keyspace: one row, id 0, with the next id and
-- how many ids a sidecar reserves at a time.
CREATE TABLE user_seq (id BIGINT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
CREATE TABLE dog_seq (id BIGINT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
CREATE TABLE rating_seq (id BIGINT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT INTO user_seq VALUES (0, 11, 100);
INSERT INTO dog_seq VALUES (0, 13, 100);
INSERT INTO rating_seq VALUES (0, 1, 100);
-- The lookup vindex dog_id: which user (so which shard) holds each dog, kept by inserts,
-- updates and deletes of demo.dogs.
CREATE TABLE dog_idx (id BIGINT NOT NULL PRIMARY KEY, owner_id BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;
