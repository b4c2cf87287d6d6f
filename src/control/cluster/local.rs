//! A Postgres server this process started on a local data directory: the shards
//! of `shardproxy demo` and of the test suite.
//!
//! `pg_ctl` does the daemonising (own session, output to the log file, so the
//! server never holds our stdout/stderr open and a Ctrl-C in the demo's terminal
//! does not reach it). We poll postmaster.pid for readiness and remember the
//! postmaster PID, to signal it on stop and prove it is gone.

use super::process::{self, pg_command};
use super::template;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a server may take to start or stop before we give up.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Unix socket paths are limited to 107 bytes; past that we go TCP-only.
const MAX_SOCKET_PATH: usize = 100;

/// How a cluster is configured beyond what every cluster gets.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Keep `fsync` and full-page writes on (the demo). Off (the default) is
    /// faster and fine for throwaway test clusters.
    pub durable: bool,
    /// Extra `postgresql.conf` settings, written after ours (so they win).
    pub settings: Vec<(String, String)>,
    /// The ICU locale of the database default collation (initdb
    /// `--locale-provider=icu --icu-locale=…`); None is the C locale.
    pub icu_locale: Option<String>,
    /// `pg_hba.conf` lines put before the template's (first match wins), e.g.
    /// `hostssl all certuser 127.0.0.1/32 cert`.
    pub hba: Vec<String>,
}

impl ClusterOptions {
    /// Options for a cluster whose data must survive a crash.
    pub fn durable() -> Self {
        ClusterOptions {
            durable: true,
            ..ClusterOptions::default()
        }
    }

    /// A throwaway cluster whose default collation is ICU `locale`.
    pub fn icu(locale: &str) -> Self {
        ClusterOptions {
            icu_locale: Some(locale.to_string()),
            ..ClusterOptions::default()
        }
    }
}

/// First line of a pg_hba.conf whose leading lines we wrote.
const HBA_MARK: &str = "# shardproxy: lines above the template's\n";

/// A running Postgres server that this process started (or adopted) and stops on drop.
#[derive(Debug)]
pub struct LocalCluster {
    data_dir: PathBuf,
    bin: PathBuf,
    port: u16,
    pid: u32,
    stopped: bool,
    detached: bool,
}

impl LocalCluster {
    /// See [`template::bin_dir`].
    pub fn bin_dir() -> Result<PathBuf, String> {
        template::bin_dir()
    }

    /// Starts a throwaway (fsync off) cluster on `data_dir`, creating it from the
    /// initdb template when it holds no PG_VERSION.
    pub fn start(data_dir: &Path, port: u16) -> Result<LocalCluster, String> {
        Self::start_with(data_dir, port, &ClusterOptions::default())
    }

    /// Starts a cluster on `data_dir` listening on 127.0.0.1:`port`. An existing
    /// data directory is reused; a server already running on it on the same port
    /// is adopted, one on another port is restarted.
    pub fn start_with(
        data_dir: &Path,
        port: u16,
        opts: &ClusterOptions,
    ) -> Result<LocalCluster, String> {
        let bin = template::bin_dir()?;
        process::check_pg_user()?;
        let data_dir = absolute(data_dir)?;
        if !data_dir.join("PG_VERSION").exists() {
            let tpl = template::ensure_template(&bin, opts.icu_locale.as_deref())?;
            template::copy_template(&tpl, &data_dir)?;
        }
        let mut cluster = LocalCluster {
            data_dir,
            bin,
            port,
            pid: 0,
            stopped: true,
            detached: false,
        };
        if let Some((pid, running_port)) = cluster.running_postmaster() {
            cluster.pid = pid;
            cluster.port = running_port;
            cluster.stopped = false;
            if running_port == port {
                cluster.wait_accepting(Instant::now() + TIMEOUT)?;
                return Ok(cluster);
            }
            cluster.stop()?;
            cluster.port = port;
        }
        cluster.write_settings(opts)?;
        let log_offset = fs::metadata(cluster.log_path())
            .map(|m| m.len())
            .unwrap_or(0);
        // A pid file left by a crash: Postgres itself decides whether it is stale;
        // we must not mistake it for the new server's.
        let stale_pid = cluster.read_pid_file().map(|pm| pm.pid);
        // -W: pg_ctl only launches; we poll readiness ourselves every 10 ms
        // (pg_ctl -w polls every 100 ms, which dominated start-up time).
        let launched = process::run(
            pg_command(&cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&cluster.data_dir)
                .arg("-l")
                .arg(cluster.log_path())
                .args(["-W", "start"]),
            "pg_ctl start",
        );
        if let Err(e) = launched {
            return Err(cluster.with_log(&format!(
                "starting Postgres on {} (port {port}): {e}",
                cluster.data_dir.display()
            )));
        }
        cluster.pid = cluster.wait_ready(stale_pid, log_offset, Instant::now() + TIMEOUT)?;
        cluster.stopped = false;
        cluster.wait_accepting(Instant::now() + TIMEOUT)?;
        Ok(cluster)
    }

    /// Makes a streaming replica of `primary` in `data_dir` (which must not
    /// exist yet) with `pg_basebackup -R` (standby.signal, primary_conninfo,
    /// a physical slot `replica_<port>`), and starts it on `port`. The template's pg_hba.conf lets the
    /// postgres user replicate over 127.0.0.1.
    pub fn start_replica(
        primary: &LocalCluster,
        data_dir: &Path,
        port: u16,
        opts: &ClusterOptions,
    ) -> Result<LocalCluster, String> {
        let bin = template::bin_dir()?;
        process::check_pg_user()?;
        let data_dir = absolute(data_dir)?;
        fs::create_dir_all(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        process::chown_to_pg(&data_dir, false)?;
        process::run(
            Command::new("chmod").arg("0700").arg(&data_dir),
            "chmod replica data dir",
        )?;
        process::run(
            pg_command(&bin.join("pg_basebackup"))
                .arg("-D")
                .arg(&data_dir)
                .args(["-h", "127.0.0.1", "-p"])
                .arg(primary.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-R",
                    "-c",
                    "fast",
                    "--no-sync",
                ]),
            "pg_basebackup",
        )?;
        // The copy carries the primary's log; the replica's starts after it.
        Self::start_with(&data_dir, port, opts)
    }

    /// `pg_ctl promote -w`: ends recovery on a replica; returns once it
    /// accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        process::run(
            pg_command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-w", "-t", "30", "promote"]),
            "pg_ctl promote",
        )
        .map(|_| ())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The Postgres `bin` directory this cluster runs from (psql, pgbench, ...).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Where the server logs (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// The directory holding the Unix socket, when the path is short enough to have one.
    pub fn socket_dir(&self) -> Option<&Path> {
        socket_dir_for(&self.data_dir, self.port)
    }

    /// `postgres://postgres@127.0.0.1:PORT/database` (trust auth, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// True until [`stop`](Self::stop) has succeeded.
    pub fn is_running(&self) -> bool {
        !self.stopped && process::postgres_alive(self.pid)
    }

    /// Leaves the server running when this value is dropped.
    pub fn detach(&mut self) {
        self.detached = true;
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fast shutdown: SIGINT to the postmaster's PID, then waits until it is
    /// gone (SIGQUIT, an immediate shutdown, if it takes over 30 s). Signalled
    /// directly rather than through `pg_ctl stop`, whose 100 ms polling would
    /// add ~90 ms to every test cluster's teardown. Idempotent.
    pub fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        process::signal(self.pid, "INT");
        if !process::wait_gone(self.pid, TIMEOUT) {
            process::signal(self.pid, "QUIT");
            if !process::wait_gone(self.pid, Duration::from_secs(10)) {
                return Err(format!(
                    "Postgres (pid {}) on {} did not stop",
                    self.pid,
                    self.data_dir.display()
                ));
            }
        }
        self.stopped = true;
        Ok(())
    }

    /// Immediate shutdown (SIGQUIT): no checkpoint, like a crash; the next
    /// start runs crash recovery. Committed data survives (synchronous_commit
    /// stays on). For tests of a shard going away.
    pub fn stop_immediate(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        process::signal(self.pid, "QUIT");
        if !process::wait_gone(self.pid, TIMEOUT) {
            return Err(format!("Postgres (pid {}) ignored SIGQUIT", self.pid));
        }
        self.stopped = true;
        Ok(())
    }

    /// The live postmaster on our data dir, from postmaster.pid: (pid, port).
    fn running_postmaster(&self) -> Option<(u32, u16)> {
        let pm = self.read_pid_file()?;
        process::is_postmaster_of(pm.pid, &self.data_dir).then_some((pm.pid, pm.port))
    }

    /// postmaster.pid: line 1 the PID, line 4 the port, line 8 the status.
    fn read_pid_file(&self) -> Option<PidFile> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        Some(PidFile {
            pid: lines.first()?.trim().parse().ok()?,
            port: lines.get(3)?.trim().parse().ok()?,
            ready: lines.get(7).is_some_and(|s| s.trim() == "ready"),
        })
    }

    /// Waits until postmaster.pid says "ready" for a live server and returns its
    /// PID (never `stale_pid`, what the file said before we launched). Fails
    /// early when the server died, or logged a FATAL/PANIC since `log_offset`
    /// without ever writing a pid file.
    fn wait_ready(
        &self,
        stale_pid: Option<u32>,
        log_offset: u64,
        deadline: Instant,
    ) -> Result<u32, String> {
        let mut seen_pid = None;
        loop {
            if let Some(pm) = self.read_pid_file().filter(|pm| Some(pm.pid) != stale_pid) {
                let alive = process::is_postmaster_of(pm.pid, &self.data_dir);
                if pm.ready && alive && pm.port == self.port {
                    return Ok(pm.pid);
                }
                if alive {
                    seen_pid = Some(pm.pid);
                }
            }
            let died = seen_pid.is_some_and(|p| !process::is_postmaster_of(p, &self.data_dir));
            let log = self.log_since(log_offset);
            let fatal = (seen_pid.is_none() && log.contains("FATAL:")) || log.contains("PANIC:");
            if died || fatal || Instant::now() >= deadline {
                // Give a dying server a moment to finish writing its log.
                std::thread::sleep(Duration::from_millis(50));
                return Err(self.with_log(&format!(
                    "Postgres on {} (port {}) did not become ready",
                    self.data_dir.display(),
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the server logged after byte `offset` of its log.
    fn log_since(&self, offset: u64) -> String {
        let text = fs::read(self.log_path()).unwrap_or_default();
        let start = (offset as usize).min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Polls a TCP connect until the server accepts or the deadline passes.
    fn wait_accepting(&self, deadline: Instant) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline || !process::postgres_alive(self.pid) {
                return Err(self.with_log(&format!(
                    "Postgres on {} is not accepting connections on port {}",
                    self.data_dir.display(),
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `shardproxy.conf` (included from postgresql.conf) with this cluster's settings.
    fn write_settings(&self, opts: &ClusterOptions) -> Result<(), String> {
        let conf = self.data_dir.join("postgresql.conf");
        let main = fs::read_to_string(&conf)
            .map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
        if !main.contains(template::INCLUDE_LINE) {
            // A data directory not made from our template (e.g. older demo dir).
            fs::write(&conf, format!("{main}\n{}\n", template::INCLUDE_LINE))
                .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        }
        let socket = socket_dir_for(&self.data_dir, self.port)
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let durable = if opts.durable { "on" } else { "off" };
        let mut text = format!(
            "# Written by shardproxy on every start; edits are overwritten.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             wal_level = logical\n\
             max_wal_senders = 16\n\
             max_replication_slots = 16\n\
             max_connections = 200\n\
             max_prepared_transactions = 64\n\
             fsync = {durable}\n\
             full_page_writes = {durable}\n",
            port = self.port,
            socket = socket.replace('\'', "''"),
        );
        for (k, v) in &opts.settings {
            text.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        let path = self.data_dir.join("shardproxy.conf");
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        process::chown_to_pg(&path, false)?;
        if !opts.hba.is_empty() {
            let hba = self.data_dir.join("pg_hba.conf");
            let old = fs::read_to_string(&hba)
                .map_err(|e| format!("cannot read {}: {e}", hba.display()))?;
            // Lines written by an earlier start are replaced, not stacked.
            let template = match old.split_once(HBA_MARK) {
                Some((_, rest)) => rest.to_string(),
                None => old,
            };
            let mut text = opts.hba.join("\n");
            text.push('\n');
            text.push_str(HBA_MARK);
            text.push_str(&template);
            fs::write(&hba, text).map_err(|e| format!("cannot write {}: {e}", hba.display()))?;
        }
        Ok(())
    }

    /// `message` followed by the tail of the server log, for start-up errors.
    fn with_log(&self, message: &str) -> String {
        let mut s = format!(
            "{message}\n--- last lines of {} ---\n{}",
            self.log_path().display(),
            self.log_tail(20)
        );
        if s.contains("Permission denied") {
            s.push_str(&format!(
                "\nhint: every directory above {} must be searchable by the '{}' user",
                self.data_dir.display(),
                process::PG_USER
            ));
        }
        s
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.stop();
        }
    }
}

/// The fields of postmaster.pid we use.
struct PidFile {
    pid: u32,
    port: u16,
    ready: bool,
}

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back).
/// Another process may take it before the caller binds; callers that can, retry.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The data dir itself holds the socket, unless its path is too long for one.
fn socket_dir_for(data_dir: &Path, port: u16) -> Option<&Path> {
    let len = data_dir.as_os_str().len() + format!("/.s.PGSQL.{port}").len();
    (len <= MAX_SOCKET_PATH).then_some(data_dir)
}

/// `path` made absolute against the current directory (the server runs in `/`).
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}
