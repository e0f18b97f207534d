-- Sourced by the mariadb CLI in tests/tests/compat.rs (`mariadb ... < file` and
-- `source file`), once direct and once through the sidecar, into a fresh database of the same
-- name; stdout must be identical. Uses client-side commands on purpose (DELIMITER, source of
-- nothing else, \G-less batch output).
CREATE TABLE cli_items (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(50) CHARACTER SET utf8mb4 NOT NULL,
  price DECIMAL(10,2),
  added DATETIME(6),
  data BLOB
) ENGINE=InnoDB;

INSERT INTO cli_items (name, price, added, data) VALUES
 ('pomme', 1.20, '2024-01-02 03:04:05.000006', X'00'),
 ('crème brûlée', 7.50, '2024-06-30 23:59:59.999999', NULL),
 ('🍣 sushi', NULL, NULL, X'CAFEBABE');

SELECT LAST_INSERT_ID() AS last_id, ROW_COUNT() AS affected;
SELECT * FROM cli_items ORDER BY id;
UPDATE cli_items SET price = price * 2 WHERE price IS NOT NULL;
SELECT ROW_COUNT() AS updated;
SELECT id, name, price, HEX(data) FROM cli_items WHERE name LIKE '%è%' OR price IS NULL ORDER BY id;

DELIMITER $$
CREATE PROCEDURE cli_report(IN min_price DECIMAL(10,2))
BEGIN
  SELECT name, price FROM cli_items WHERE price >= min_price ORDER BY name;
  SELECT COUNT(*) AS total FROM cli_items;
END $$
DELIMITER ;

CALL cli_report(2.00);
SELECT 1 AS a; SELECT 2 AS b, 'deux' AS c;

BEGIN;
DELETE FROM cli_items;
ROLLBACK;
SELECT COUNT(*) AS after_rollback, @@in_transaction AS in_tx FROM cli_items;

SET @v = (SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR '|') FROM cli_items);
SELECT @v AS names, CHAR_LENGTH(@v) AS chars, LENGTH(@v) AS bytes;
SHOW WARNINGS;
SELECT CAST('7x' AS UNSIGNED) AS truncated;
SHOW WARNINGS;
