//! A network namespace of our own, linked to this one by a veth pair, for partition tests.
//! The host side gets `10.201.X.1/30`, the namespace side `10.201.X.2/30` (X from the
//! process id, so parallel test processes do not collide). [`NetNs::cut`] drops every
//! packet between the two (a blackhole route inside the namespace: the replies die, so
//! both directions are cut and nothing is refused, as in a real partition);
//! [`NetNs::heal`] restores the link. Removed on drop. Needs root (CAP_NET_ADMIN).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{bail, Context};

/// A namespace and its link to the host namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetNs {
    /// Creates the namespace `sc<pid>` with loopback up and the veth link configured.
    pub fn create() -> anyhow::Result<NetNs> {
        let pid = std::process::id();
        let subnet = u8::try_from(pid % 250).unwrap_or(0) + 1;
        let ns = NetNs {
            name: format!("sc{pid}"),
            host_if: format!("sch{pid}"),
            subnet,
        };
        let peer = format!("scn{pid}");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr()),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ns.exec(&[
            "addr",
            "add",
            &format!("{}/30", ns.inner_addr()),
            "dev",
            &peer,
        ])?;
        ns.exec(&["link", "set", &peer, "up"])?;
        ns.exec(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This side's address on the link (reachable from inside the namespace).
    pub fn host_addr(&self) -> IpAddr {
        Ipv4Addr::new(10, 201, self.subnet, 1).into()
    }

    /// The namespace's address on the link.
    pub fn inner_addr(&self) -> IpAddr {
        Ipv4Addr::new(10, 201, self.subnet, 2).into()
    }

    /// Drops all traffic between the namespace and this side.
    pub fn cut(&self) -> anyhow::Result<()> {
        self.exec(&[
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.host_addr()),
        ])
    }

    /// Undoes [`NetNs::cut`].
    pub fn heal(&self) -> anyhow::Result<()> {
        self.exec(&[
            "route",
            "del",
            "blackhole",
            &format!("{}/32", self.host_addr()),
        ])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes the other.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
