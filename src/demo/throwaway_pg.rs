//! A private, throwaway PostgreSQL for `demo`: started from the machine's server binaries in a
//! temporary directory on a free loopback port, and removed when the demo ends. As root it
//! runs as an unprivileged user, because `initdb` refuses to run as root.
//!
//! Only `start`, `url`, `dir` and `remove` are used by the demo; the rest is how.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one line printed when no server binaries are found: what to install, and the way out.
pub const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install them \
     (Debian/Ubuntu: sudo apt-get install postgresql; Fedora: sudo dnf install postgresql-server; \
     macOS: brew install postgresql), pass --pg-bin-dir DIR, or set DATABASE_URL to use an existing database";

/// A running throwaway cluster. [`ThrowawayPg::remove`] stops it and deletes its directory;
/// dropping it does the same, so an early return or a panic leaves nothing behind.
#[derive(Debug)]
pub struct ThrowawayPg {
    bindir: PathBuf,
    dir: PathBuf,
    /// The unprivileged user the server runs as when we are root.
    owner: Option<String>,
    url: String,
    removed: bool,
}

impl ThrowawayPg {
    /// Create the cluster and start it; on failure everything created so far is removed.
    pub fn start(bindir: Option<&Path>) -> anyhow::Result<ThrowawayPg> {
        let bindir = find_bindir(bindir).ok_or_else(|| anyhow::anyhow!(INSTALL_HINT))?;
        let owner = is_root().then(unprivileged_user);
        let dir = make_private_dir(owner.as_deref())?;
        let mut pg = ThrowawayPg {
            bindir,
            dir,
            owner,
            url: String::new(),
            removed: false,
        };
        pg.init_and_run()?;
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
        if self.removed {
            return;
        }
        self.removed = true;
        if self.dir.join("data/postmaster.pid").exists() {
            let data = self.dir.join("data");
            let stop = [
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ];
            let _ = self.run_quiet("pg_ctl", &stop);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn init_and_run(&mut self) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        let initdb = [
            "-D".as_ref(),
            data.as_os_str(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "-E".as_ref(),
            "UTF8".as_ref(),
            "--no-locale".as_ref(),
        ];
        self.run_logged("initdb", &initdb, "initdb.log")?;
        let port = free_port()?;
        let server_opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let start = [
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "-o".as_ref(),
            server_opts.as_ref(),
            "start".as_ref(),
        ];
        self.run_logged("pg_ctl", &start, "server.log")?;
        self.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Ok(())
    }

    /// Run one of the server programs as the cluster's owner; on failure, the error carries
    /// the tail of `log` (in the cluster's directory), where the program said why.
    fn run_logged(
        &self,
        program: &str,
        args: &[&std::ffi::OsStr],
        log: &str,
    ) -> anyhow::Result<()> {
        let out = self
            .command(program, args)
            .output()
            .with_context(|| format!("cannot run {}", self.bindir.join(program).display()))?;
        if out.status.success() {
            return Ok(());
        }
        let logged = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stderr), logged);
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        anyhow::bail!(
            "{program} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )
    }

    fn run_quiet(&self, program: &str, args: &[&std::ffi::OsStr]) -> std::io::Result<()> {
        self.command(program, args).output().map(|_| ())
    }

    /// `BINDIR/program args…`, as the owner when we are root (`runuser`, else `su`).
    fn command(&self, program: &str, args: &[&std::ffi::OsStr]) -> Command {
        let path = self.bindir.join(program);
        let Some(owner) = &self.owner else {
            let mut cmd = Command::new(path);
            cmd.args(args);
            return cmd;
        };
        if let Some(runuser) = on_path("runuser") {
            let mut cmd = Command::new(runuser);
            cmd.args(["-u", owner, "--"]).arg(path).args(args);
            return cmd;
        }
        let line = std::iter::once(path.as_os_str())
            .chain(args.iter().copied())
            .map(|a| sh_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("su");
        cmd.args(["-s", "/bin/sh", owner, "-c", &line]);
        cmd
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The directory holding `initdb` and `pg_ctl`: the one given, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian/Ubuntu), `/usr/pgsql-*/bin` (RHEL), else `PATH`.
pub fn find_bindir(given: Option<&Path>) -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = given {
        return has_both(dir).then(|| dir.to_path_buf());
    }
    let mut versioned: Vec<(u32, PathBuf)> = ["/usr/lib/postgresql", "/usr"]
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("pgsql-").unwrap_or(&name);
            let major = version.split('.').next()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Some(dir);
    }
    let initdb = on_path("initdb")?;
    let dir = std::fs::canonicalize(&initdb).ok()?.parent()?.to_path_buf();
    has_both(&dir)
        .then_some(dir)
        .or_else(|| Some(initdb.parent()?.to_path_buf()).filter(|d| has_both(d)))
}

/// `program`'s full path if it is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `postgres` if the machine has that user (the packages create it), else `nobody`.
fn unprivileged_user() -> String {
    let exists = |u: &str| {
        Command::new("id")
            .arg(u)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if exists("postgres") {
        "postgres"
    } else {
        "nobody"
    }
    .to_string()
}

/// `/tmp/wecom-outbox-demo-XXXXXXXX`, readable only by the server's user. As root it lives
/// in `/tmp` (a `TMPDIR` under `/root` cannot be entered by that user) and is handed over.
fn make_private_dir(owner: Option<&str>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let base = match owner {
        Some(_) => PathBuf::from("/tmp"),
        None => std::env::temp_dir(),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = base.join(format!("wecom-outbox-demo-{}", &id[..8]));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(user) = owner {
        let (uid, gid) = (id_of(user, "-u")?, id_of(user, "-g")?);
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .with_context(|| format!("cannot hand {} to {user}", dir.display()))?;
    }
    Ok(dir)
}

fn id_of(user: &str, flag: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("cannot find the ids of user {user}"))
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(socket.local_addr()?.port())
}

/// `s` as one word for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_keeps_one_word() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_given_directory_without_the_binaries_is_not_used() {
        assert_eq!(find_bindir(Some(Path::new("/nonexistent"))), None);
    }
}
