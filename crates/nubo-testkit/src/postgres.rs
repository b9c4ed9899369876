//! A real PostgreSQL server (Debian's `postgresql` package) for one
//! test: a throwaway data directory, a free loopback port, stopped on
//! drop. As root (CI's containers), the server runs as the `postgres`
//! user the package makes, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running server; its superuser is `nubo`, with no password.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

/// Where `initdb` and `pg_ctl` are: `NUBO_PG_BIN`, the `PATH`, or the
/// newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NUBO_PG_BIN") {
        return dir.into();
    }
    let in_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    if let Some(dir) = in_path {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|d| d.join("initdb").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: `apt-get install postgresql` (or set NUBO_PG_BIN to the folder with initdb and pg_ctl)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Starts a server; panics with the server's log if it does not start.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory failed");
        }
        let data = dir.path().join("data");
        let pg = Postgres {
            port: crate::nats::free_port(),
            bin,
            data,
            as_postgres,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "nubo",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            pg.port,
            pg.socket_dir().display()
        );
        let log = pg.socket_dir().join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        pg
    }

    fn socket_dir(&self) -> &Path {
        self.data.parent().unwrap()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.socket_dir().join("server.log")).unwrap_or_default();
            panic!(
                "{tool} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The URL of database `db` (`postgres` is there from the start).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://nubo@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
