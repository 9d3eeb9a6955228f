//! `gka` processes for the command-line tests: stdout lines arrive on a channel, stdin takes
//! lines, every wait is bounded, and the process is killed when the test ends however it ends.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for any one line or exit.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running process whose stdout lines arrive on a channel.
#[derive(Debug)]
pub struct Proc {
    /// The process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout lines not read yet.
    pub lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `cmd` with stdin and stdout piped (stderr goes to the test's). Unless the test
    /// or the command sets `RUST_LOG`, a daemon logs warnings only.
    pub fn start(cmd: &mut Command) -> Self {
        Self::start_with_stderr(cmd, Stdio::inherit())
    }

    /// As [`Self::start`], with stderr going to `stderr` (a file, say).
    pub fn start_with_stderr(cmd: &mut Command, stderr: impl Into<Stdio>) -> Self {
        let log_level_set = cmd.get_envs().any(|(k, _)| k == "RUST_LOG");
        if !log_level_set && std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn gka");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines: rx, seen: Vec::new() }
    }

    /// Reads every line printed so far into `seen`.
    pub fn catch_up(&mut self) {
        self.seen.extend(self.lines.try_iter());
    }

    /// Waits (at most [`WAIT`]) for a line matching `pred`, among those seen first; every line
    /// read is kept in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        self.wait_for_new(what, pred)
    }

    /// As [`Self::wait_for`], among lines not read yet only.
    pub fn wait_for_new(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Writes one line to its stdin.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the process");
        stdin.flush().expect("flush the process's stdin");
    }

    /// Closes its stdin (what Ctrl-D does at a terminal).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (at most [`WAIT`]) for it to exit, reading its lines meanwhile.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            self.catch_up();
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.catch_up();
                return status;
            }
            assert!(Instant::now() < deadline, "it did not exit; saw {:#?}", self.seen);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
