//! The db role's registry of client sessions and the statements they are running: what
//! `/debug/queries` lists, and how a KILL — from another client or from the admin
//! endpoint — reaches the session it names.
//!
//! A kill never sends `KILL QUERY` to mysqld itself: it flags the target session and
//! wakes it, and the session kills its own statement on the connection it holds. Only the
//! session knows when its statement ends and its connection goes back to the pool, so
//! only it can make sure the kill does not land on another session's statement.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

/// Statement text kept for `/debug/queries`, in bytes.
const MAX_TEXT: usize = 512;

const KILL_QUERY: u8 = 1;
const KILL_CONNECTION: u8 = 2;

/// Every live session of the db role.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<u32, Arc<Entry>>>,
}

/// One session, as others see it.
#[derive(Debug)]
pub struct Entry {
    pub id: u32,
    pub user: String,
    /// The client identity the rules and the access policy use.
    pub client: String,
    pub peer: SocketAddr,
    started: Instant,
    kill: AtomicU8,
    wake: Notify,
    current: Mutex<Current>,
}

/// The statement a session is running, if `running`; the text buffer is reused from
/// statement to statement.
#[derive(Debug, Clone)]
struct Current {
    running: bool,
    text: String,
    started: Instant,
    backend_id: Option<u32>,
}

/// A registered session; leaves the registry when dropped.
#[derive(Debug)]
pub struct Registration {
    sessions: Arc<Sessions>,
    pub entry: Arc<Entry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.sessions.lock();
        // A session that logged in again (COM_CHANGE_USER) registered anew under its id.
        if map
            .get(&self.entry.id)
            .is_some_and(|e| Arc::ptr_eq(e, &self.entry))
        {
            map.remove(&self.entry.id);
        }
    }
}

/// What `/debug/queries` shows of one running statement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningStatement {
    pub id: u32,
    pub user: String,
    pub client: String,
    pub peer: String,
    pub statement: String,
    pub age_ms: u64,
    pub session_age_ms: u64,
    /// mysqld's id of the connection running it.
    pub backend_connection_id: Option<u32>,
}

/// Why a kill was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillRefusal {
    NoSuchSession,
    NotOwner,
}

impl Sessions {
    pub fn new() -> Arc<Self> {
        Arc::new(Sessions::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Arc<Entry>>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a session under the id its client was given.
    pub fn register(
        self: &Arc<Self>,
        id: u32,
        user: &str,
        client: &str,
        peer: SocketAddr,
    ) -> Registration {
        let entry = Arc::new(Entry {
            id,
            user: user.to_string(),
            client: client.to_string(),
            peer,
            started: Instant::now(),
            kill: AtomicU8::new(0),
            wake: Notify::new(),
            current: Mutex::new(Current {
                running: false,
                text: String::new(),
                started: Instant::now(),
                backend_id: None,
            }),
        });
        self.lock().insert(id, entry.clone());
        Registration {
            sessions: self.clone(),
            entry,
        }
    }

    /// The running statements, oldest first.
    pub fn running(&self) -> Vec<RunningStatement> {
        let entries: Vec<Arc<Entry>> = self.lock().values().cloned().collect();
        let mut out: Vec<RunningStatement> = entries
            .iter()
            .filter_map(|e| {
                let current = e.current();
                if !current.running {
                    return None;
                }
                Some(RunningStatement {
                    id: e.id,
                    user: e.user.clone(),
                    client: e.client.clone(),
                    peer: e.peer.to_string(),
                    statement: current.text.clone(),
                    age_ms: millis(current.started),
                    session_age_ms: millis(e.started),
                    backend_connection_id: current.backend_id,
                })
            })
            .collect();
        out.sort_by_key(|q| std::cmp::Reverse(q.age_ms));
        out
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Asks session `id` to kill its statement (and, for `connection`, to end). With
    /// `user`, only that user's sessions may be killed, as MySQL does for accounts
    /// without the PROCESS/SUPER privilege; the admin endpoint passes `None`.
    pub fn kill(&self, id: u32, connection: bool, user: Option<&str>) -> Result<(), KillRefusal> {
        let entry = self
            .lock()
            .get(&id)
            .cloned()
            .ok_or(KillRefusal::NoSuchSession)?;
        if user.is_some_and(|u| u != entry.user) {
            return Err(KillRefusal::NotOwner);
        }
        entry.request(if connection {
            KILL_CONNECTION | KILL_QUERY
        } else {
            KILL_QUERY
        });
        Ok(())
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Entry {
    fn current(&self) -> MutexGuard<'_, Current> {
        match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn request(&self, what: u8) {
        self.kill.fetch_or(what, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// A statement starts on mysqld connection `backend_id`. A `KILL QUERY` that came
    /// while the session was between statements found nothing to kill; it is dropped.
    pub fn started(&self, text: &[u8], backend_id: Option<u32>) {
        self.kill.fetch_and(!KILL_QUERY, Ordering::AcqRel);
        let end = text.len().min(MAX_TEXT);
        let mut current = self.current();
        current.running = true;
        current.text.clear();
        current
            .text
            .push_str(&String::from_utf8_lossy(&text[..end]));
        current.started = Instant::now();
        current.backend_id = backend_id;
    }

    /// The statement ended.
    pub fn finished(&self) {
        self.current().running = false;
    }

    /// Resolves when someone asks to kill the running statement (consuming the request).
    pub async fn query_killed(&self) {
        loop {
            if self.kill.fetch_and(!KILL_QUERY, Ordering::AcqRel) & KILL_QUERY != 0 {
                return;
            }
            self.wake.notified().await;
        }
    }

    /// Resolves when someone asks to end the session.
    pub async fn connection_killed(&self) {
        while !self.is_connection_killed() {
            self.wake.notified().await;
        }
    }

    /// Someone asked to end the session.
    pub fn is_connection_killed(&self) -> bool {
        self.kill.load(Ordering::Acquire) & KILL_CONNECTION != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5000))
    }

    #[tokio::test]
    async fn a_kill_reaches_the_running_statement_only() {
        let sessions = Sessions::new();
        let reg = sessions.register(7, "app", "user:app", peer());
        assert_eq!(
            sessions.kill(8, false, None),
            Err(KillRefusal::NoSuchSession)
        );
        assert_eq!(
            sessions.kill(7, false, Some("other")),
            Err(KillRefusal::NotOwner)
        );
        // A KILL QUERY between statements is dropped when the next one starts.
        assert_eq!(sessions.kill(7, false, Some("app")), Ok(()));
        reg.entry.started(b"SELECT SLEEP(10)", Some(42));
        let early = tokio::time::timeout(Duration::from_millis(50), reg.entry.query_killed());
        assert!(early.await.is_err(), "a stale KILL QUERY must not fire");
        let running = sessions.running();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].statement, "SELECT SLEEP(10)");
        assert_eq!(running[0].backend_connection_id, Some(42));
        assert_eq!(sessions.kill(7, true, None), Ok(()));
        let fired = tokio::time::timeout(Duration::from_secs(1), reg.entry.query_killed());
        assert!(fired.await.is_ok());
        assert!(reg.entry.is_connection_killed());
        reg.entry.finished();
        assert!(sessions.running().is_empty());
        drop(reg);
        assert_eq!(sessions.len(), 0);
    }
}
