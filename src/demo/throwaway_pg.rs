//! A private, throwaway PostgreSQL for `demo`: `scripts/pg-throwaway` (the one implementation,
//! which the test command uses too) embedded in the binary and run with `bash`. It starts the
//! machine's server binaries in a temporary directory on a free loopback port, as an
//! unprivileged user when we are root, and [`ThrowawayPg::remove`] stops and deletes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The script, as in the repository.
const SCRIPT: &str = include_str!("../../scripts/pg-throwaway");

/// Why the throwaway server could not be started: the script's own words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartFailed(String);

/// A running throwaway cluster. [`ThrowawayPg::remove`] stops it and deletes its directory;
/// dropping it does the same, so an early return or a panic leaves nothing behind.
#[derive(Debug)]
pub struct ThrowawayPg {
    dir: PathBuf,
    bindir: Option<PathBuf>,
    url: String,
    removed: bool,
}

impl ThrowawayPg {
    /// Create the cluster and start it (from `bindir` when given); on failure everything
    /// created so far is removed.
    pub fn start(bindir: Option<&Path>) -> Result<ThrowawayPg, StartFailed> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut pg = ThrowawayPg {
            dir: PathBuf::from("/tmp").join(format!("wecom-outbox-demo-{}", &id[..8])),
            bindir: bindir.map(Path::to_path_buf),
            url: String::new(),
            removed: false,
        };
        let out = pg.script("start").map_err(|e| {
            StartFailed(format!("cannot run bash for the throwaway PostgreSQL: {e}"))
        })?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(StartFailed(said)); // dropping `pg` removes what was made
        }
        pg.url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: trust authentication, loopback only.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary directory holding the data, the socket and the server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stop the server at once (nothing in it is worth keeping) and delete the directory.
    pub fn remove(&mut self) {
        if !std::mem::replace(&mut self.removed, true) {
            let _ = self.script("stop");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn script(&self, command: &str) -> std::io::Result<Output> {
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(SCRIPT)
            .arg("pg-throwaway")
            .arg(command)
            .arg(&self.dir);
        match &self.bindir {
            Some(dir) => bash.env("PG_BINDIR", dir),
            None => bash.env_remove("PG_BINDIR"),
        };
        bash.output()
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        self.remove();
    }
}
