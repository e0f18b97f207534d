//! A real `mariadbd` on loopback, owned by this process: the one place that knows how to
//! initialise, start, query and stop MariaDB for `shardcar local` and the test harness.
//!
//! A fresh data directory is a copy of a pristine template initialised once by
//! `mariadb-install-db` and cached under the system temp dir, keyed by the server version, so
//! repeated starts cost a file copy instead of a bootstrap.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use super::process::{
    die_with_parent, free_loopback_port, require_program, running_as_root, send_signal,
};
use super::LocalError;

const INSTALL_HINT: &str = "apt-get install mariadb-server mariadb-client";
/// Bumped when the template's install arguments change, so stale templates are not reused.
const TEMPLATE_FORMAT: &str = "v1";
const TEMPLATE_MARKER: &str = ".shardcar-template-complete";
const ERROR_LOG: &str = "mariadbd.err";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Unix socket paths are limited to 108 bytes including the terminator.
const MAX_SOCKET_PATH: usize = 100;

/// How to run one `mariadbd`.
#[derive(Debug, Clone)]
pub struct MariaDbOptions {
    /// Data directory; `None` = a temp dir removed when the [`MariaDb`] is dropped. An existing,
    /// initialised directory is reused as is (its root password must be `root_password`).
    pub data_dir: Option<PathBuf>,
    /// TCP port on 127.0.0.1; `None` = a free one.
    pub port: Option<u16>,
    /// `server_id` (must differ between replicas of one shard).
    pub server_id: u32,
    /// Extra `mariadbd` arguments, appended last (so they override ours).
    pub extra_args: Vec<String>,
    /// Password set for `root@localhost` and `root@127.0.0.1` (empty = none).
    pub root_password: String,
    /// Binary log with GTID-friendly settings (row format, log_slave_updates, strict mode).
    pub log_bin: bool,
    /// Run inside this network namespace (`ip netns exec`); the unix socket, which the
    /// readiness check and [`MariaDb::exec`] use, works across namespaces.
    pub netns: Option<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions {
            data_dir: None,
            port: None,
            server_id: 1,
            extra_args: Vec::new(),
            root_password: "root".to_string(),
            log_bin: false,
            netns: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Programs {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
}

impl Programs {
    fn find() -> Result<Self, LocalError> {
        Ok(Programs {
            server: require_program(
                &["mariadbd", "mysqld"],
                &["/usr/sbin", "/usr/local/sbin", "/usr/libexec"],
                INSTALL_HINT,
            )?,
            install_db: require_program(
                &["mariadb-install-db", "mysql_install_db"],
                &["/usr/bin", "/usr/local/bin"],
                INSTALL_HINT,
            )?,
            client: require_program(
                &["mariadb", "mysql"],
                &["/usr/bin", "/usr/local/bin"],
                INSTALL_HINT,
            )?,
        })
    }
}

/// A running `mariadbd`; killed (and its temp dirs removed) on drop, even when a test panics.
#[derive(Debug)]
pub struct MariaDb {
    child: Option<Child>,
    pid: u32,
    port: u16,
    server_id: u32,
    data_dir: PathBuf,
    socket: PathBuf,
    root_password: String,
    client: PathBuf,
    // Dropped after the process is gone (see `Drop`).
    _temp_data: Option<tempfile::TempDir>,
    /// Private `--tmpdir`, and the socket when the data dir's path is too long for one.
    /// Servers sharing `/tmp` have been seen deleting each other's temp tables.
    _run_dir: tempfile::TempDir,
}

impl MariaDb {
    /// Initialises (from the cached template) and starts a server, waits until it accepts
    /// connections, and sets the root password. Picks another port and retries when a chosen
    /// free port was taken in the meantime.
    pub async fn start(opts: MariaDbOptions) -> Result<MariaDb, LocalError> {
        let programs = Programs::find()?;
        let attempts = if opts.port.is_some() { 1 } else { 3 };
        let mut last_err = None;
        for _ in 0..attempts {
            match Self::start_once(&programs, &opts).await {
                Ok(db) => return Ok(db),
                Err(e @ LocalError::StartFailed { .. }) if is_port_conflict(&e) => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| LocalError::InvalidOption {
            option: "port",
            reason: "no attempt was made".to_string(),
        }))
    }

    async fn start_once(programs: &Programs, opts: &MariaDbOptions) -> Result<MariaDb, LocalError> {
        let (data_dir, temp_data) = match &opts.data_dir {
            Some(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
                let dir = tokio::fs::canonicalize(dir)
                    .await
                    .map_err(|e| LocalError::io(format!("resolving {}", dir.display()), e))?;
                (dir, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("shardcar-mariadb-")
                    .tempdir()
                    .map_err(|e| LocalError::io("creating a temp data dir", e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let fresh = !data_dir.join("mysql").is_dir();
        if fresh {
            let template = ensure_template(programs).await?;
            let (from, to) = (template.clone(), data_dir.clone());
            tokio::task::spawn_blocking(move || copy_dir(&from, &to))
                .await
                .map_err(|e| LocalError::io("copying the template", std::io::Error::other(e)))?
                .map_err(|e| {
                    LocalError::io(
                        format!(
                            "copying template {} to {}",
                            template.display(),
                            data_dir.display()
                        ),
                        e,
                    )
                })?;
        }

        let run_dir = tempfile::Builder::new()
            .prefix("shardcar-mariadb-run-")
            .tempdir()
            .map_err(|e| LocalError::io("creating a run dir", e))?;
        let mut socket = data_dir.join("mariadbd.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            socket = run_dir.path().join("mariadbd.sock");
        }
        let port = match opts.port {
            Some(p) => p,
            None => free_loopback_port()?,
        };
        // A previous run's error log would confuse the tail we report.
        let _ = tokio::fs::remove_file(data_dir.join(ERROR_LOG)).await;

        let mut cmd = Command::from(super::process::command_in(
            opts.netns.as_deref(),
            &programs.server,
        ));
        cmd.arg("--no-defaults")
            .args(server_args(&data_dir, run_dir.path(), &socket, port, opts))
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Own process group: a terminal's Ctrl-C reaches us, and we stop the server.
            .process_group(0);
        die_with_parent(cmd.as_std_mut());
        let child = cmd
            .spawn()
            .map_err(|e| LocalError::io(format!("spawning {}", programs.server.display()), e))?;
        let pid = child.id().unwrap_or_default();

        let mut db = MariaDb {
            child: Some(child),
            pid,
            port,
            server_id: opts.server_id,
            data_dir,
            socket,
            root_password: String::new(),
            client: programs.client.clone(),
            _temp_data: temp_data,
            _run_dir: run_dir,
        };
        db.wait_ready().await?;
        if fresh {
            db.set_root_password(&opts.root_password).await?;
        } else {
            db.root_password = opts.root_password.clone();
        }
        Ok(db)
    }

    async fn wait_ready(&mut self) -> Result<(), LocalError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self
                        .start_failed(format!("mariadbd exited with {status}"))
                        .await);
                }
            }
            if greeting_received(&self.socket).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self
                    .start_failed(format!(
                        "no MySQL greeting on {} within {:?}",
                        self.socket.display(),
                        READY_TIMEOUT
                    ))
                    .await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn start_failed(&self, reason: String) -> LocalError {
        LocalError::StartFailed {
            data_dir: self.data_dir.clone(),
            reason,
            log_tail: log_tail(&self.data_dir.join(ERROR_LOG), 30).await,
        }
    }

    async fn set_root_password(&mut self, password: &str) -> Result<(), LocalError> {
        if password.is_empty() {
            return Ok(());
        }
        let pw = sql_string(password);
        // Not binlogged: a replica's own set-up must not create GTIDs of its own.
        let sql = format!(
            "SET SESSION sql_log_bin = 0;\n\
             ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY {pw};\n\
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY {pw};\n\
             ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY {pw};\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED BY {pw};\n\
             FLUSH PRIVILEGES;\n"
        );
        self.exec(&sql).await?;
        self.root_password = password.to_string();
        Ok(())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The data directory (holds `mariadbd.err`, the error log).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The root password (empty = none).
    pub fn root_password(&self) -> &str {
        &self.root_password
    }

    /// The `server_id` it was started with.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn client_command(&self, db: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--no-defaults")
            .arg("--protocol=SOCKET")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .args(["--batch", "--raw", "--skip-column-names"])
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !self.root_password.is_empty() {
            // The environment keeps the password off the command line (`ps`).
            cmd.env("MYSQL_PWD", &self.root_password);
        }
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        cmd
    }

    async fn run_client(
        &self,
        db: Option<&str>,
        input: Vec<u8>,
        what: String,
    ) -> Result<String, LocalError> {
        let mut child = self
            .client_command(db)
            .spawn()
            .map_err(|e| LocalError::io(format!("spawning {}", self.client.display()), e))?;
        let mut stdin = child.stdin.take().ok_or_else(|| {
            LocalError::io(
                "opening the CLI's stdin",
                std::io::ErrorKind::BrokenPipe.into(),
            )
        })?;
        let writer = tokio::spawn(async move {
            let result = stdin.write_all(&input).await;
            drop(stdin);
            result
        });
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| LocalError::io("waiting for the mariadb CLI", e))?;
        // A write error only matters if the CLI also failed; its stderr says why.
        let _ = writer.await;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(LocalError::Sql {
                port: self.port,
                what,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// Runs `sql` (one or more `;`-terminated statements) with the `mariadb` CLI as root over
    /// the socket (`--batch --raw --skip-column-names`) and returns its stdout.
    pub async fn exec(&self, sql: &str) -> Result<String, LocalError> {
        self.run_client(None, sql.as_bytes().to_vec(), abbreviate(sql))
            .await
    }

    /// Like [`MariaDb::exec`] with a default database.
    pub async fn exec_in(&self, db: &str, sql: &str) -> Result<String, LocalError> {
        self.run_client(Some(db), sql.as_bytes().to_vec(), abbreviate(sql))
            .await
    }

    /// Feeds a SQL file to the CLI, optionally with a default database; stops at the first
    /// error.
    pub async fn source_file(&self, db: Option<&str>, path: &Path) -> Result<String, LocalError> {
        let input = tokio::fs::read(path)
            .await
            .map_err(|e| LocalError::io(format!("reading {}", path.display()), e))?;
        self.run_client(db, input, path.display().to_string()).await
    }

    /// Creates (or re-passwords) `user` at `localhost` and `127.0.0.1` and grants it
    /// `grants_sql`, the privilege part of a GRANT, e.g. `ALL PRIVILEGES ON *.*` or
    /// `SELECT, INSERT ON shop.*` (empty = no grant).
    pub async fn create_user(
        &self,
        user: &str,
        password: &str,
        grants_sql: &str,
    ) -> Result<(), LocalError> {
        self.exec(&user_sql(user, password, grants_sql))
            .await
            .map(|_| ())
    }

    /// [`MariaDb::create_user`] outside the binary log: the account exists on this server
    /// only, and its replicas do not replay it.
    pub async fn create_local_user(
        &self,
        user: &str,
        password: &str,
        grants_sql: &str,
    ) -> Result<(), LocalError> {
        let sql = format!(
            "SET SESSION sql_log_bin = 0;\n{}",
            user_sql(user, password, grants_sql)
        );
        self.exec(&sql).await.map(|_| ())
    }

    /// Kills the server with SIGKILL (a crash, for failover tests) and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            wait_gone(&mut child, Duration::from_secs(10));
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server gracefully (SIGTERM, then waits; SIGKILL after a minute) and removes
    /// its temp dirs.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(self.pid, libc::SIGTERM);
            if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Let the process go before the temp dirs are removed after this body.
            wait_gone(&mut child, Duration::from_secs(5));
        }
    }
}

/// Polls (without a runtime) until the child has exited or `timeout` passed.
fn wait_gone(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            _ => return,
        }
    }
}

fn server_args(
    data_dir: &Path,
    tmp_dir: &Path,
    socket: &Path,
    port: u16,
    opts: &MariaDbOptions,
) -> Vec<String> {
    let d = data_dir.display();
    let mut args = vec![
        format!("--datadir={d}"),
        format!("--socket={}", socket.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--pid-file={d}/mariadbd.pid"),
        format!("--log-error={d}/{ERROR_LOG}"),
        format!("--tmpdir={}", tmp_dir.display()),
        "--skip-name-resolve".to_string(),
        "--max-connections=1000".to_string(),
        "--local-infile=1".to_string(),
        "--max-allowed-packet=128M".to_string(),
        "--character-set-server=utf8mb4".to_string(),
        "--collation-server=utf8mb4_general_ci".to_string(),
        "--innodb-buffer-pool-size=64M".to_string(),
        "--innodb-log-file-size=8M".to_string(),
        "--innodb-flush-log-at-trx-commit=2".to_string(),
        format!("--server-id={}", opts.server_id),
        format!("--relay-log={d}/relay-bin"),
    ];
    if running_as_root() {
        args.push("--user=root".to_string());
    }
    if opts.log_bin {
        args.extend([
            format!("--log-bin={d}/binlog"),
            "--binlog-format=ROW".to_string(),
            "--log-slave-updates=1".to_string(),
            "--gtid-strict-mode=1".to_string(),
        ]);
    }
    args
}

/// Returns the cached pristine data dir for this server version, initialising it once.
/// Concurrent callers (tests in parallel processes) each build into a private dir and rename
/// it into place; the loser discards its copy.
async fn ensure_template(programs: &Programs) -> Result<PathBuf, LocalError> {
    let version = server_version(&programs.server).await?;
    let key: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let template =
        std::env::temp_dir().join(format!("shardcar-mariadb-template-{key}-{TEMPLATE_FORMAT}"));
    if template.join(TEMPLATE_MARKER).is_file() {
        return Ok(template);
    }
    let staging = tempfile::Builder::new()
        .prefix("shardcar-mariadb-template-staging-")
        .tempdir()
        .map_err(|e| LocalError::io("creating a template staging dir", e))?;
    let data = staging.path().join("data");
    tokio::fs::create_dir_all(&data)
        .await
        .map_err(|e| LocalError::io(format!("creating {}", data.display()), e))?;
    let mut cmd = Command::new(&programs.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--skip-name-resolve")
        .arg("--innodb-log-file-size=8M")
        .arg("--innodb-buffer-pool-size=64M")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = programs.server.parent() {
        // Debian's install-db finds mariadbd itself; other layouts need a hint.
        if !dir.ends_with("sbin") {
            cmd.arg(format!(
                "--basedir={}",
                dir.parent().unwrap_or(dir).display()
            ));
        }
    }
    if running_as_root() {
        cmd.arg("--user=root");
    }
    let output = cmd
        .output()
        .await
        .map_err(|e| LocalError::io(format!("running {}", programs.install_db.display()), e))?;
    if !output.status.success() {
        return Err(LocalError::InstallFailed {
            data_dir: data,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    tokio::fs::write(data.join(TEMPLATE_MARKER), version.as_bytes())
        .await
        .map_err(|e| LocalError::io("marking the template complete", e))?;
    match tokio::fs::rename(&data, &template).await {
        Ok(()) => Ok(template),
        // Someone else finished first; theirs is as good as ours.
        Err(_) if template.join(TEMPLATE_MARKER).is_file() => Ok(template),
        Err(e) => {
            // A stale, incomplete template from a crash: replace it.
            let _ = tokio::fs::remove_dir_all(&template).await;
            tokio::fs::rename(&data, &template).await.map_err(|_| {
                LocalError::io(format!("moving the template to {}", template.display()), e)
            })?;
            Ok(template)
        }
    }
}

async fn server_version(server: &Path) -> Result<String, LocalError> {
    let output = Command::new(server)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| LocalError::io(format!("running {} --version", server.display()), e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    if version.is_empty() {
        return Err(LocalError::StartFailed {
            data_dir: PathBuf::new(),
            reason: format!("{} --version printed nothing", server.display()),
            log_tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(version)
}

/// Copies a directory tree (regular files and dirs), skipping the template marker.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == TEMPLATE_MARKER {
            continue;
        }
        let target = to.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// True once the server sends a MySQL greeting (protocol 10) or an ERR packet on its socket.
/// The socket (unlike a TCP port picked as free) cannot belong to another server; mariadbd
/// creates it after binding the TCP port, so both are up.
async fn greeting_received(socket: &Path) -> bool {
    let attempt = async {
        let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        Some(crate::app::sends_greeting(stream).await)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

fn is_port_conflict(err: &LocalError) -> bool {
    match err {
        LocalError::StartFailed { log_tail, .. } => {
            log_tail.contains("Address already in use") || log_tail.contains("Bind on TCP/IP")
        }
        _ => false,
    }
}

async fn log_tail(path: &Path, lines: usize) -> String {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// A SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn abbreviate(sql: &str) -> String {
    const MAX: usize = 200;
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

/// CREATE USER (or ALTER, when it exists) for `localhost` and `127.0.0.1`, with `grants_sql`.
fn user_sql(user: &str, password: &str, grants_sql: &str) -> String {
    let (u, pw) = (sql_string(user), sql_string(password));
    let mut sql = String::new();
    for host in ["localhost", "127.0.0.1"] {
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS {u}@'{host}' IDENTIFIED BY {pw};\n\
             ALTER USER {u}@'{host}' IDENTIFIED BY {pw};\n"
        ));
        if !grants_sql.trim().is_empty() {
            sql.push_str(&format!("GRANT {grants_sql} TO {u}@'{host}';\n"));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_string_escapes_quotes_and_backslashes() {
        assert_eq!(sql_string(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn abbreviate_keeps_short_statements_and_cuts_long_ones() {
        assert_eq!(abbreviate("SELECT\n 1"), "SELECT 1");
        assert!(abbreviate(&"x ".repeat(500)).ends_with("..."));
    }
}
