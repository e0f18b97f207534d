-- A scatter query for the sharded benchmark: a range on the secondary column k (not the
-- vindex column), ordered, with a LIMIT. Through a sharded keyspace every shard answers
-- and the sidecar merges; directly it is one index range scan.
require("oltp_common")

function prepare_statements()
   -- Text protocol only: the statement is built per event.
end

function event()
   local table_name = "sbtest" .. sysbench.rand.uniform(1, sysbench.opt.tables)
   local k = sysbench.rand.default(1, sysbench.opt.table_size)
   con:query(string.format(
      "SELECT id, k FROM %s WHERE k BETWEEN %d AND %d ORDER BY k, id LIMIT 10",
      table_name, k, k + 100))
end
