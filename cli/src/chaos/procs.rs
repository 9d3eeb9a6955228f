//! The soak's processes: `gka daemon` and `gka member` children of this program, their stdout
//! collected line by line, and the signals the soak sends them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::analysis::ProcessLog;

/// A child process, killed when dropped.
pub(super) struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Reads its stdout into `log` until the pipe closes.
    reader: Option<std::thread::JoinHandle<()>>,
    /// What it printed so far.
    pub(super) log: Arc<Mutex<ProcessLog>>,
}

impl Proc {
    fn spawn(mut cmd: Command, member: &str) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let log = Arc::new(Mutex::new(ProcessLog { member: member.to_owned(), lines: Vec::new() }));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).lines.push(line);
            }
        });
        let stdin = child.stdin.take();
        Ok(Self { child, stdin, reader: Some(reader), log })
    }

    /// The process id, for signals.
    pub(super) fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends a signal.
    pub(super) fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to a child process this program started and has not reaped.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Writes one line to its stdin; false if it is gone.
    pub(super) fn say(&mut self, line: &str) -> bool {
        let Some(stdin) = self.stdin.as_mut() else { return false };
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).is_ok()
    }

    /// Kills it (SIGKILL) and waits for it, and for the last of its output.
    pub(super) fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Asks it to stop (SIGTERM) and waits up to `within`, then kills it.
    pub(super) fn stop(&mut self, within: Duration) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// What it printed.
    pub(super) fn log(&self) -> ProcessLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until it printed a line matching `pred`, for at most `within`.
    pub(super) fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().lines.iter().any(|l| pred(l)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("no such line within {within:?}: {:?}", self.log().lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the soak's keys and programs are.
pub(super) struct Setup {
    /// This program (`gka`).
    pub(super) gka: PathBuf,
    /// `<id>.key` files.
    pub(super) keys: PathBuf,
    /// `<id>.pub` files: the daemon's and every member's trust store.
    pub(super) trust: PathBuf,
    /// `--plugins`, if given.
    pub(super) plugins: Vec<PathBuf>,
}

impl Setup {
    /// A daemon on `addr` with a 3 s failure timeout.
    pub(super) fn daemon(&self, addr: &str) -> Result<Proc> {
        let mut cmd = Command::new(&self.gka);
        cmd.args(["daemon", "--listen", addr, "--trust"]).arg(&self.trust);
        let daemon = Proc::spawn(cmd, "daemon")?;
        daemon
            .wait_for(Duration::from_secs(20), |l| l.starts_with("gka daemon listening"))
            .context("the daemon did not start")?;
        Ok(daemon)
    }

    /// A member `id` of group `chaos`, running TGDH, rejoining for up to a minute.
    pub(super) fn member(&self, addr: &str, id: &str) -> Result<Proc> {
        let mut cmd = Command::new(&self.gka);
        cmd.args(["member", "--daemon", addr, "--group", "chaos", "--id", id, "--key"])
            .arg(key_file(&self.keys, id))
            .arg("--trust")
            .arg(&self.trust)
            .args(["--protocol", "tgdh", "--give-up-after", "60", "--json"]);
        for dir in &self.plugins {
            cmd.arg("--plugins").arg(dir);
        }
        Proc::spawn(cmd, id)
    }
}

fn key_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.key"))
}
