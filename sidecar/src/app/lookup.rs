//! Lookup vindexes at run time: reading a lookup table to narrow a route, and running the
//! lookup rows an owner table's write keeps (before it, after it, or taken back when it
//! failed outside a transaction). Every statement here goes through the session's own
//! planner and connections, so it joins an open transaction like the client's.

use std::collections::BTreeSet;

use shardcar_filter::plan::{LookupWrites, OwnerRows, Route, Takeover};
use shardcar_filter::protocol::error_codes::{ER_DUP_ENTRY, ER_UNKNOWN_ERROR};
use shardcar_filter::protocol::ErrPacket;
use tracing::{debug, warn};

use super::session::Session;
use super::sharded::Outcome;

/// What a lookup query that answered with an OK packet gets.
const NO_ROWS: &str = "a lookup vindex query returned no result set";

impl Session {
    /// Runs `route`'s lookup step, if any, and keeps only the shards its rows name.
    pub(super) async fn narrow_by_lookup(
        &mut self,
        route: &mut Route,
        depth: usize,
    ) -> Result<(), ErrPacket> {
        let Some(step) = route.lookup.take() else {
            return Ok(());
        };
        self.shared.metrics.lookup_statement("read");
        let (_, rows) = self
            .collect_rows(step.query.clone(), depth, NO_ROWS)
            .await?;
        let found = step
            .shards(&self.router_ref()?.schema(), &rows)
            .map_err(|e| e.to_err_packet())?;
        debug!(query = %step.query, shards = ?found, "lookup narrowed the route");
        route.narrow(&found);
        Ok(())
    }

    /// An UPDATE or DELETE of an owner table: reads the rows it touches, writes the lookup
    /// rows of new values, runs the statement, then removes the rows of old values.
    pub(super) async fn owner_write(
        &mut self,
        route: Route,
        owner: &OwnerRows,
        text: &str,
        depth: usize,
    ) -> Result<Outcome, ErrPacket> {
        let read = owner.read(self.in_any_transaction());
        let (columns, rows) = self.collect_rows(read, depth, NO_ROWS).await?;
        let writes = owner
            .writes(&self.router_ref()?.schema(), &columns, &rows)
            .map_err(|e| e.to_err_packet())?;
        let jobs = Self::jobs(&route, text.as_bytes());
        // UPDATE and DELETE never write under IGNORE: no row is skipped.
        self.lookup_writes_before(&writes, depth).await?;
        let outcome = self
            .execute(jobs, route.merge, route.replicated, None)
            .await;
        self.lookup_writes_after(&writes, outcome.is_ok(), depth)
            .await;
        outcome
    }

    /// Writes the lookup rows a write adds, before it runs. A consistent lookup's
    /// duplicate is taken over when the row holding the value is an orphan. Returns the
    /// INSERT rows (by index) that an IGNORE must skip: their unique lookup value belongs
    /// to another row.
    pub(super) async fn lookup_writes_before(
        &mut self,
        writes: &LookupWrites,
        depth: usize,
    ) -> Result<BTreeSet<usize>, ErrPacket> {
        let mut duplicates = BTreeSet::new();
        for insert in &writes.before {
            self.shared.metrics.lookup_statement("insert");
            match Box::pin(self.collect(insert.sql.clone(), depth + 1)).await {
                Ok(_) => {}
                Err(dup) if dup.code == ER_DUP_ENTRY.code && !insert.takeovers.is_empty() => {
                    for takeover in &insert.takeovers {
                        self.take_over(takeover, &dup, depth).await?;
                    }
                }
                Err(e) => return Err(e),
            }
            for (row, query) in &insert.verify {
                let (_, found) = self.collect_rows(query.clone(), depth, NO_ROWS).await?;
                if found.is_empty() {
                    duplicates.insert(*row);
                }
            }
        }
        Ok(duplicates)
    }

    /// One value of a consistent lookup whose insert hit a duplicate: insert it when the
    /// row is gone, point an orphan row at the new owner row, or report `dup` when an
    /// owner row really holds the value.
    async fn take_over(
        &mut self,
        takeover: &Takeover,
        dup: &ErrPacket,
        depth: usize,
    ) -> Result<(), ErrPacket> {
        let (_, locked) = self
            .collect_rows(takeover.lock.clone(), depth, NO_ROWS)
            .await?;
        let existing = match locked.as_slice() {
            [] => {
                Box::pin(self.collect(takeover.insert.clone(), depth + 1)).await?;
                return Ok(());
            }
            [row] => row.first().cloned().flatten(),
            _ => {
                return Err(ErrPacket::new(
                    ER_UNKNOWN_ERROR,
                    format!(
                        "unexpected rows from a consistent lookup vindex: {} for one value",
                        locked.len()
                    ),
                ))
            }
        };
        let (_, owners) = self
            .collect_rows(takeover.owner.clone(), depth, NO_ROWS)
            .await?;
        if !owners.is_empty() {
            return Err(dup.clone());
        }
        if takeover.points_here(existing.as_deref()) {
            return Ok(());
        }
        self.shared.metrics.lookup_statement("takeover");
        debug!(statement = %takeover.update, "taking an orphan lookup row over");
        Box::pin(self.collect(takeover.update.clone(), depth + 1)).await?;
        Ok(())
    }

    /// After the write: removes the lookup rows of the values it removed, or, when it
    /// failed outside a transaction, the rows written for it (in a transaction the
    /// client's ROLLBACK takes them back). A row left behind by a failure here only widens
    /// a lookup by one shard, so it is logged, not reported.
    pub(super) async fn lookup_writes_after(
        &mut self,
        writes: &LookupWrites,
        succeeded: bool,
        depth: usize,
    ) {
        let (statements, kind) = if succeeded {
            (&writes.after, "delete")
        } else if !self.in_any_transaction() {
            (&writes.undo, "undo")
        } else {
            return;
        };
        for sql in statements {
            self.shared.metrics.lookup_statement(kind);
            if let Err(e) = Box::pin(self.collect(sql.clone(), depth + 1)).await {
                warn!(statement = %sql, error = %e.message, "a lookup row was left behind");
            }
        }
    }
}
