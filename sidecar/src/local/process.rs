//! Process and port helpers shared by `shardcar local` and the test harness: child processes
//! that die with their parent, POSIX signals, free loopback ports and program lookup.
//!
//! This is the only module of the crate that uses `unsafe`, for `pre_exec`/`prctl` and `kill`.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use super::LocalError;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_loopback_port() -> Result<u16, LocalError> {
    // Ports come from below the kernel's ephemeral range (32768..60999 on Linux): an
    // ephemeral port handed out by `bind(0)` can be taken by any outgoing connection of
    // another process before our server binds it. Each process starts at its own point
    // and walks on, so parallel test binaries rarely probe the same port.
    const FIRST: u16 = 10_000;
    const SPAN: u32 = 22_768;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        start,
        std::sync::atomic::Ordering::AcqRel,
        std::sync::atomic::Ordering::Acquire,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::AcqRel) % SPAN;
        let port = FIRST + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(LocalError::io(
        "finding a free loopback port in 10000..32767",
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
}

/// Makes the child receive SIGKILL when the thread that spawns it exits (`PR_SET_PDEATHSIG`),
/// so servers started by a test binary or by `shardcar local` never outlive it.
///
/// Linux ties the signal to the *thread* that forked: spawn from a thread that lives as long as
/// the child should (the main thread, a test thread, a runtime worker), not from
/// `spawn_blocking`, whose threads exit when idle.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls `prctl` and
    // `getppid`/`_exit`, which are async-signal-safe; it touches no memory of the parent.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to process `pid`. Returns false if it no longer exists.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: `kill` has no memory-safety preconditions; `pid` is a positive process id we
    // spawned ourselves.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether this process runs as root (mariadbd then needs `--user=root`).
#[allow(unsafe_code)]
pub fn running_as_root() -> bool {
    // SAFETY: `geteuid` cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds `names` (first match wins) on `PATH`, then in `extra_dirs`.
pub fn find_program(names: &[&str], extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for name in names {
        for dir in path_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(extra_dirs.iter().map(Path::new))
        {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds a required program or says how to install it.
pub fn require_program(
    names: &[&str],
    extra_dirs: &[&str],
    install_hint: &str,
) -> Result<PathBuf, LocalError> {
    find_program(names, extra_dirs).ok_or_else(|| LocalError::NotInstalled {
        program: names.join(" or "),
        searched: format!("PATH, {}", extra_dirs.join(", ")),
        install_hint: install_hint.to_string(),
    })
}

/// A command for `program`, run inside network namespace `netns` (`ip netns exec`, which
/// execs the program in place, so the child's pid is the program's) when one is given.
pub fn command_in(netns: Option<&str>, program: &Path) -> std::process::Command {
    match netns {
        None => std::process::Command::new(program),
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
    }
}
