//! The real `shardcar` binary in the app or db role, started with a generated YAML config on free
//! loopback ports.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shardcar::local::process::{command_in, die_with_parent, send_signal};
use shardcar_filter::protocol::auth::{
    format_native_hash, native_password_hash, sha2_password_hash,
};

use shardcar::local::http::{http_get, http_get_at};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the app sidecar connects and whom it lets in.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// `127.0.0.1:PORT` or `unix:/path`.
    pub upstream_address: String,
    pub upstream_user: String,
    pub upstream_password: String,
    /// The application account the sidecar authenticates.
    pub app_user: String,
    pub app_password: String,
    /// Raw YAML appended at the top level of the config, e.g. `local_infile: true\n`.
    pub extra_yaml: String,
    /// Raw YAML appended inside `upstream:`, indented by two spaces, e.g.
    /// `  tls:\n    enabled: true\n`.
    pub upstream_extra_yaml: String,
    /// The subcommand: `app` or `db`.
    pub role: &'static str,
    /// The address both listeners bind (default 127.0.0.1).
    pub host: std::net::IpAddr,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        SidecarOptions {
            upstream_address: String::new(),
            upstream_user: "root".to_string(),
            upstream_password: "root".to_string(),
            app_user: "app".to_string(),
            app_password: "app".to_string(),
            extra_yaml: String::new(),
            upstream_extra_yaml: String::new(),
            role: "app",
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            netns: None,
        }
    }
}

/// A running `shardcar app`; killed on drop.
#[derive(Debug)]
pub struct SidecarProcess {
    child: Child,
    host: std::net::IpAddr,
    port: u16,
    admin_port: u16,
    dir: tempfile::TempDir,
}

/// Finds the `shardcar` binary: `CARGO_BIN_EXE_shardcar` if set, else the newest of
/// `target/{debug,release}/shardcar` under the workspace (honouring `CARGO_TARGET_DIR`).
pub fn shardcar_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_shardcar") {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let newest = ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("shardcar"))
        .filter_map(|p| {
            let modified = p.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, p))
        })
        .max();
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "the shardcar binary is not built under {} (run `cargo build -p shardcar`, \
             or set CARGO_BIN_EXE_shardcar)",
            target.display()
        ),
    }
}

fn yaml_string(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    serde_json::Value::String(s.to_string()).to_string()
}

impl SidecarProcess {
    /// Writes the config, starts the binary and waits until `GET /ready` answers 200.
    pub fn start(opts: SidecarOptions) -> anyhow::Result<Self> {
        Self::start_in(opts, &std::env::temp_dir())
    }

    /// Like [`SidecarProcess::start`], but waits only until `GET /healthz` answers 200 (the
    /// process is up), not for `/ready`: for an upstream that is down or refused.
    pub fn start_live(opts: SidecarOptions) -> anyhow::Result<Self> {
        let mut sidecar = Self::spawn_in(&opts, &std::env::temp_dir())?;
        sidecar.wait_for("/healthz")?;
        Ok(sidecar)
    }

    /// Like [`SidecarProcess::start`], with the config and logs in a temp dir under `parent`
    /// (the shared cluster keeps them under its swept root, as statics are never dropped).
    pub fn start_in(opts: SidecarOptions, parent: &Path) -> anyhow::Result<Self> {
        let mut sidecar = Self::spawn_in(&opts, parent)?;
        sidecar.wait_ready()?;
        Ok(sidecar)
    }

    /// Writes the config and starts the binary, without waiting for anything.
    fn spawn_in(opts: &SidecarOptions, parent: &Path) -> anyhow::Result<Self> {
        let binary = shardcar_binary()?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("shardcar-sidecar-")
            .tempdir_in(parent)
            .context("creating the sidecar's temp dir")?;
        let port = crate::free_port();
        let admin_port = crate::free_port();
        let config_path = dir.path().join("shardcar.yaml");
        let password_file = dir.path().join("upstream-password");
        std::fs::write(&password_file, &opts.upstream_password)
            .context("writing the upstream password file")?;
        let config = render_config(opts, port, admin_port, &password_file);
        std::fs::write(&config_path, config).context("writing the sidecar config")?;

        let stdout = File::create(dir.path().join("stdout.log")).context("creating stdout.log")?;
        let stderr = File::create(dir.path().join("stderr.log")).context("creating stderr.log")?;
        let mut cmd = command_in(opts.netns.as_deref(), &binary);
        cmd.arg(opts.role)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(SidecarProcess {
            child,
            host: opts.host,
            port,
            admin_port,
            dir,
        })
    }

    /// Waits until `GET /ready` answers 200.
    pub fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.wait_for("/ready")
    }

    /// Waits until `GET path` on the admin port answers 200 (at most 30 s); fails at once if
    /// the process exits.
    pub fn wait_for(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "shardcar exited with {status} before it was ready; stderr:\n{}",
                    self.stderr()
                );
            }
            if matches!(http_get_at(self.host, self.admin_port, path), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "shardcar's {path} on {}:{} did not answer 200 within {READY_TIMEOUT:?}; \
                     stderr:\n{}",
                    self.host,
                    self.admin_port,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where applications connect (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin HTTP port (127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("shardcar.yaml")
    }

    /// Everything the process wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read(self.dir.path().join("stderr.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The Prometheus text from `GET /metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.admin_port, "/metrics")?;
        if status != 200 {
            bail!("GET /metrics answered {status}: {body}");
        }
        Ok(body)
    }

    /// Whether the process has exited (`Some(status)`) or still runs (`None`).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends SIGTERM (graceful drain).
    pub fn terminate(&mut self) {
        send_signal(self.child.id(), libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }

    /// Resident set size in KiB (`VmRSS` from /proc), `None` once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_rss_kib(self.child.id())
    }

    /// User + system CPU time in clock ticks (`utime + stime` from /proc/PID/stat).
    pub fn cpu_ticks(&self) -> Option<u64> {
        proc_cpu_ticks(self.child.id())
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn render_config(
    opts: &SidecarOptions,
    port: u16,
    admin_port: u16,
    password_file: &Path,
) -> String {
    let pw = opts.app_password.as_bytes();
    let native = format_native_hash(&native_password_hash(pw));
    let sha2: String = sha2_password_hash(pw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut yaml = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        yaml,
        "listen: \"{host}:{port}\"\n\
         admin_listen: \"{host}:{admin_port}\"\n\
         users:\n  - name: {name}\n    native_hash: {native}\n    sha2_hash: {sha2}\n\
         upstream:\n  address: {address}\n  user: {user}\n  password_file: {pwfile}\n\
         {upstream_extra}",
        host = opts.host,
        name = yaml_string(&opts.app_user),
        native = yaml_string(&native),
        sha2 = yaml_string(&sha2),
        address = yaml_string(&opts.upstream_address),
        user = yaml_string(&opts.upstream_user),
        pwfile = yaml_string(&password_file.display().to_string()),
        upstream_extra = opts.upstream_extra_yaml,
    );
    if !opts.upstream_extra_yaml.is_empty() && !opts.upstream_extra_yaml.ends_with('\n') {
        yaml.push('\n');
    }
    if !opts.extra_yaml.is_empty() {
        yaml.push_str(&opts.extra_yaml);
        if !opts.extra_yaml.ends_with('\n') {
            yaml.push('\n');
        }
    }
    yaml
}

/// `VmRSS` of a process in KiB.
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `utime + stime` of a process in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3 of the full line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The value of one Prometheus series in `text`, written exactly as `name{labels}` (or the
/// bare name).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// [`metric`], with 0 for a series that is not there (yet).
pub fn metric_or_zero(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}
