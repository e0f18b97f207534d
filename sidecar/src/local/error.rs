//! Errors from starting and driving the local processes (mariadbd, its CLI tools).

use std::path::PathBuf;

/// What went wrong while starting or talking to a local `mariadbd`.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A required program is not installed.
    #[error("{program} not found (looked in {searched}); install it with `{install_hint}`")]
    NotInstalled {
        /// The program looked for, e.g. `mariadbd`.
        program: String,
        /// Where it was looked for.
        searched: String,
        /// The command that installs it.
        install_hint: String,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `mariadb-install-db` failed.
    #[error("mariadb-install-db into {data_dir} failed ({status}):\n{output}")]
    InstallFailed {
        /// The data directory being initialised.
        data_dir: PathBuf,
        /// The exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// `mariadbd` did not become ready.
    #[error("mariadbd (data dir {data_dir}) failed to start: {reason}\n--- last lines of {data_dir}/mariadbd.err ---\n{log_tail}")]
    StartFailed {
        /// The data directory of the server.
        data_dir: PathBuf,
        /// Why we gave up.
        reason: String,
        /// The last lines of the server's error log.
        log_tail: String,
    },
    /// A statement run through the `mariadb` CLI failed.
    #[error("mariadb CLI failed on port {port} running {what}: {stderr}")]
    Sql {
        /// The server's TCP port (identifies the instance).
        port: u16,
        /// The statement (abbreviated) or file that failed.
        what: String,
        /// The CLI's stderr.
        stderr: String,
    },
    /// A configuration value is not usable.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

impl LocalError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LocalError::Io {
            what: what.into(),
            source,
        }
    }
}
