//! Real etcd (Debian `etcd-server`, v3.4) members on free loopback ports, each in its own
//! temp dir: the topology of `shardcar local --topo etcd`, and the tests' etcd clusters.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::{http_get, http_post};
use super::process::{die_with_parent, free_loopback_port, require_program};
use anyhow::{bail, Context};

const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// One running etcd member; killed and its data dir removed on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

/// A set of etcd members forming one cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Comma-separated client URLs of all members, as etcd clients take them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Etcd::client_url).collect()
    }

    /// The client URLs on `host` (see [`etcd_cluster_also_on`]).
    pub fn endpoints_on(&self, host: IpAddr) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{host}:{}", m.client_port))
            .collect()
    }

    /// The member that is the raft leader now, as the members themselves report it.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(Etcd::is_leader)
    }
}

struct MemberPlan {
    name: String,
    client_port: u16,
    peer_port: u16,
}

fn etcd_binary() -> anyhow::Result<PathBuf> {
    Ok(require_program(
        &["etcd"],
        &["/usr/bin", "/usr/local/bin"],
        "apt-get install etcd-server",
    )?)
}

impl Etcd {
    /// Starts a single-member cluster and waits until `/health` reports healthy.
    pub fn start() -> anyhow::Result<Etcd> {
        let plan = MemberPlan {
            name: "etcd0".to_string(),
            client_port: free_loopback_port()?,
            peer_port: free_loopback_port()?,
        };
        let initial = format!("{}=http://127.0.0.1:{}", plan.name, plan.peer_port);
        let mut etcd = Self::spawn(&plan, &initial, "shardcar-test-1", None)?;
        etcd.wait_healthy(HEALTH_TIMEOUT)?;
        Ok(etcd)
    }

    fn spawn(
        plan: &MemberPlan,
        initial_cluster: &str,
        token: &str,
        also_on: Option<IpAddr>,
    ) -> anyhow::Result<Etcd> {
        let binary = etcd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("shardcar-etcd-")
            .tempdir()
            .context("creating the etcd temp dir")?;
        let log = File::create(dir.path().join("etcd.log")).context("creating etcd.log")?;
        let log2 = log.try_clone().context("cloning the etcd.log handle")?;
        let mut client = format!("http://127.0.0.1:{}", plan.client_port);
        if let Some(host) = also_on {
            client.push_str(&format!(",http://{host}:{}", plan.client_port));
        }
        let peer = format!("http://127.0.0.1:{}", plan.peer_port);
        let mut cmd = Command::new(&binary);
        cmd.arg(format!("--name={}", plan.name))
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={token}"))
            // Fast elections on loopback.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Etcd {
            child,
            name: plan.name.clone(),
            client_port: plan.client_port,
            peer_port: plan.peer_port,
            dir,
        })
    }

    fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "etcd {} exited with {status}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if self.is_healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd {} not healthy on {} within {timeout:?}; log:\n{}",
                    self.name,
                    self.client_url(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `GET /health` answers `"health":"true"`.
    pub fn is_healthy(&self) -> bool {
        matches!(http_get(self.client_port, "/health"), Ok((200, body)) if body.contains("\"health\":\"true\""))
    }

    /// Whether this member reports itself as the leader (`/v3/maintenance/status`).
    pub fn is_leader(&self) -> bool {
        let Ok((200, body)) = http_post(self.client_port, "/v3/maintenance/status") else {
            return false;
        };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        let member = status.pointer("/header/member_id");
        member.is_some() && member == status.get("leader")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the member with SIGKILL (for quorum-loss tests).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last 40 lines of the member's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(self.dir.path().join("etcd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an `n`-member etcd cluster on loopback and waits until every member is healthy
/// (which needs a quorum, so all members are started before waiting).
pub async fn etcd_cluster(n: usize) -> anyhow::Result<EtcdCluster> {
    etcd_cluster_also_on(n, None).await
}

/// [`etcd_cluster`] whose members also take clients on `also_on` (the host side of a
/// network namespace's link, for processes inside it).
pub async fn etcd_cluster_also_on(
    n: usize,
    also_on: Option<IpAddr>,
) -> anyhow::Result<EtcdCluster> {
    if n == 0 {
        bail!("an etcd cluster needs at least one member");
    }
    let plans = (0..n)
        .map(|i| {
            Ok(MemberPlan {
                name: format!("etcd{i}"),
                client_port: free_loopback_port()?,
                peer_port: free_loopback_port()?,
            })
        })
        .collect::<anyhow::Result<Vec<MemberPlan>>>()?;
    let initial = plans
        .iter()
        .map(|p| format!("{}=http://127.0.0.1:{}", p.name, p.peer_port))
        .collect::<Vec<_>>()
        .join(",");
    let token = format!(
        "shardcar-test-{}-{}",
        std::process::id(),
        plans[0].peer_port
    );
    // Spawned on this thread (see the crate doc on PR_SET_PDEATHSIG).
    let mut members = Vec::with_capacity(n);
    for plan in &plans {
        members.push(Etcd::spawn(plan, &initial, &token, also_on)?);
    }
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    for member in &mut members {
        loop {
            if let Some(status) = member.child.try_wait()? {
                bail!(
                    "etcd {} exited with {status}; log:\n{}",
                    member.name,
                    member.log_tail()
                );
            }
            if member.is_healthy() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd {} not healthy within {HEALTH_TIMEOUT:?}; log:\n{}",
                    member.name,
                    member.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(EtcdCluster { members })
}
