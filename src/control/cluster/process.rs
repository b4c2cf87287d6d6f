//! Running Postgres programs as the right OS user, and watching processes by PID.
//!
//! Postgres refuses to run as root, so when this process is root every
//! `initdb`/`pg_ctl`/`postgres` call goes through `runuser -u postgres` and the
//! files it must write are `chown`ed to `postgres`. Hand-written on top of
//! `std::process` and `/proc` to avoid a libc dependency for three syscalls.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The OS user that owns data directories and runs the server when we are root.
pub const PG_USER: &str = "postgres";

/// True when this process runs as root (uid 0).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Our uid, used to keep per-user caches (the initdb template) apart.
pub fn uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// A command for `program`, run as `postgres` when we are root. The working
/// directory is `/` so the server never complains that it cannot enter root's cwd.
pub fn pg_command(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir("/");
    cmd
}

/// Runs `cmd` to completion; on failure the error has the command's stderr and stdout.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            match String::from_utf8_lossy(&out.stdout).trim_end() {
                "" => String::new(),
                s => format!("\n{s}"),
            }
        ))
    }
}

/// Gives `path` (recursively when `recursive`) to the `postgres` user; a no-op
/// unless we are root.
pub fn chown_to_pg(path: &Path, recursive: bool) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-R");
    }
    cmd.arg(format!("{PG_USER}:{PG_USER}")).arg(path);
    run(&mut cmd, &format!("chown {}", path.display())).map(|_| ())
}

/// Checks that the `postgres` OS user exists when we will need it.
pub fn check_pg_user() -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let ok = Command::new("id")
        .arg("-u")
        .arg(PG_USER)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "running as root but there is no '{PG_USER}' user to run Postgres as; \
             install the server (apt-get install postgresql) or create the user"
        ))
    }
}

/// True while `pid` is a live (not zombie) `postgres` process. A PID reused by
/// another program counts as gone.
pub fn postgres_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) state ..."; comm may hold spaces, so split at the last ')'.
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = tail.trim_start().chars().next().unwrap_or('X');
    comm.starts_with("postgres") && !matches!(state, 'Z' | 'X' | 'x')
}

/// True when `pid` is a live postmaster started on `data_dir` (its command
/// line names the directory, as `pg_ctl -D dir` passes it). Guards against a
/// stale postmaster.pid whose PID now belongs to another server.
pub fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    if !postgres_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = data_dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == dir)
}

/// Sends `signal` (e.g. "INT") to `pid` with the `kill` command.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .output();
}

/// Waits up to `timeout` for `pid` to exit; true when it did.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while postgres_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_pid_is_not_a_postgres() {
        assert!(!postgres_alive(std::process::id()));
        assert!(!postgres_alive(u32::MAX - 1));
    }
}
