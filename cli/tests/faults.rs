//! `gka member` and `gka daemon` as processes facing misconfiguration and faults (one test
//! binary, to keep the suite's link time down).

const GKA: &str = env!("CARGO_BIN_EXE_gka");

/// A child process, killed when the test ends however it ends (even if it is stopped).
struct Child(std::process::Child);

impl Child {
    fn pid(&self) -> libc::pid_t {
        self.0.id() as libc::pid_t
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child process (it may be stopped).
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gka daemon` on `listen` (a 1 s failure timeout) admitting the keys in `trust`, and
/// returns it with the address it bound.
fn start_daemon(trust: &std::path::Path, listen: &str) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut daemon = Child(
        Command::new(GKA)
            .args(["daemon", "--listen", listen, "--failure-timeout-ms", "1000"])
            .args(["--trust", trust.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gka daemon starts"),
    );
    // The daemon prints the address it bound; read it without waiting for ever.
    let stdout = daemon.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the daemon says where it listens");
    assert!(line.contains("listening"), "{line}");
    (daemon, line.trim().rsplit(' ').next().expect("an address").to_owned())
}

/// `gka member` refuses to start when its trust store cannot vouch for it (no key for its id,
/// or another key than its own): such a member would only stall its group. It says why, names
/// the flag, and exits non-zero before connecting anywhere.
mod misconfigured_member {
    use std::path::Path;
    use std::process::Command;

    use super::GKA;

    fn keygen(dir: &Path, id: &str) {
        let o = Command::new(GKA)
            .args(["keygen", "--id", id, "--out", dir.to_str().unwrap()])
            .output()
            .expect("gka runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn member(keys: &Path, trust: &Path) -> std::process::Output {
        Command::new(GKA)
            .args(["member", "--daemon", "127.0.0.1:9", "--group", "g", "--id", "a"])
            .args(["--key", keys.join("a.key").to_str().unwrap()])
            .args(["--trust", trust.to_str().unwrap()])
            .output()
            .expect("gka runs")
    }

    /// `gka keygen` never replaces a private key without `--force`: a lost key cannot be made
    /// again.
    #[test]
    fn keygen_keeps_an_existing_private_key_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path(), "a");
        let before = std::fs::read(dir.path().join("a.key")).unwrap();
        let again = Command::new(GKA)
            .args(["keygen", "--id", "a", "--out", dir.path().to_str().unwrap()])
            .output()
            .expect("gka runs");
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(!again.status.success() && stderr.contains("--force"), "{stderr}");
        assert_eq!(std::fs::read(dir.path().join("a.key")).unwrap(), before, "kept");
        let forced = Command::new(GKA)
            .args(["keygen", "--id", "a", "--force", "--out", dir.path().to_str().unwrap()])
            .output()
            .expect("gka runs");
        assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
        assert_ne!(std::fs::read(dir.path().join("a.key")).unwrap(), before, "replaced");
    }

    #[test]
    fn a_member_its_trust_store_cannot_vouch_for_does_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, other, trust) =
            (dir.path().join("keys"), dir.path().join("other"), dir.path().join("trust"));
        for d in [&keys, &other, &trust] {
            std::fs::create_dir_all(d).unwrap();
        }
        keygen(&keys, "a");
        keygen(&other, "a");

        let empty = member(&keys, &trust);
        let stderr = String::from_utf8_lossy(&empty.stderr);
        assert!(!empty.status.success());
        assert!(stderr.contains("--trust") && stderr.contains("no key for \"a\""), "{stderr}");

        std::fs::copy(other.join("a.pub"), trust.join("a.pub")).unwrap();
        let wrong = member(&keys, &trust);
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(!wrong.status.success());
        assert!(stderr.contains("is not this member's key"), "{stderr}");
    }

    /// A missing key file, a text file and a binary (DER) one where a PEM key belongs, and a
    /// plugin directory that is missing or holds only a broken library: each error names the
    /// file or flag once and says what to do.
    #[test]
    fn bad_key_files_and_plugin_directories_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        let run = || String::from_utf8_lossy(&member(keys, keys).stderr).into_owned();
        let key = keys.join("a.key");
        let path = key.to_str().unwrap().to_owned();
        let once = |stderr: &str| stderr.matches(path.as_str()).count() == 1;

        let missing = run();
        assert!(missing.contains("(--key)") && missing.contains("gka keygen"), "{missing}");
        assert!(once(&missing), "{missing}");
        std::fs::write(&key, "hello, not a key\n").unwrap();
        let text = run();
        assert!(text.contains("no PEM block") && !text.contains("NUL"), "{text}");
        assert!(once(&text) && text.contains("(--key)"), "{text}");
        std::fs::write(&key, [0x30, 0x82, 0x01, 0x00, 0xff, 0xfe]).unwrap();
        let der = run();
        assert!(der.contains("openssl pkey -inform DER") && !der.contains("UTF-8"), "{der}");
        assert!(once(&der), "{der}");

        let plugins = |dirs: &str| {
            let o = Command::new(GKA).args(["plugins", "list", "--plugins", dirs]).output();
            String::from_utf8_lossy(&o.expect("gka runs").stderr).into_owned()
        };
        let nowhere = keys.join("no-plugins");
        let said = plugins(nowhere.to_str().unwrap());
        assert!(said.contains("(--plugins) does not exist"), "{said}");
        let broken = keys.join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("libgka_x_plugin.so"), "not a library").unwrap();
        let o = Command::new(GKA)
            .args(["demo", "--plugins", broken.to_str().unwrap()])
            .output()
            .expect("gka runs");
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{said}");
        assert!(said.contains("loaded: none") && said.contains("libgka_x_plugin.so:"), "{said}");
        let reason = said.lines().find(|l| l.contains("not loaded:")).expect("the reason");
        assert!(reason.trim_end().len() > reason.find(".so:").unwrap() + 5, "{said}");
    }
}

/// A `gka daemon` process stopped (SIGSTOP) for longer than its failure timeout expels nobody
/// once it resumes: nobody could be heard while it was stopped, so the silence was its own.
/// (It used to expel the whole group.) The members here send nothing while the daemon is
/// stopped and start again as soon as it resumes, so the daemon's first look at the clock
/// after the stall sees every member silent for longer than the timeout.
mod daemon_stall {
    use std::time::Duration;

    use gka_host::net::wire::{ClientMsg, ServerMsg};
    use gka_host::net::Connection;
    use gka_tests::group::identity;
    use tokio::time::Instant;

    use super::start_daemon;

    /// Heartbeats from both, and every view either sees, for `span`.
    async fn beat(conns: &mut [Connection], span: Duration, views: &mut Vec<Vec<String>>) {
        let until = Instant::now() + span;
        while Instant::now() < until {
            for c in conns.iter_mut() {
                c.send(&ClientMsg::Heartbeat).await.expect("the daemon's socket takes it");
                while let Ok(Ok(Some(msg))) =
                    tokio::time::timeout(Duration::from_millis(20), c.recv()).await
                {
                    match msg {
                        ServerMsg::View { view, .. } => views.push(view.members),
                        ServerMsg::Error(e) => panic!("the daemon refused: {e}"),
                        _ => {}
                    }
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_daemon_expels_nobody_when_it_resumes() {
        let trust = tempfile::tempdir().unwrap();
        let ids = [identity("a"), identity("b")];
        for i in &ids {
            i.write(trust.path()).unwrap();
        }
        let (daemon, addr) = start_daemon(trust.path(), "127.0.0.1:0");

        let mut conns = vec![
            Connection::join(&addr, "g", &ids[0]).await.unwrap(),
            Connection::join(&addr, "g", &ids[1]).await.unwrap(),
        ];
        let mut views = Vec::new();
        let mut view_id = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while views.last().map(Vec::len) != Some(2) {
            for c in conns.iter_mut() {
                c.send(&ClientMsg::Heartbeat).await.unwrap();
                if let Ok(Ok(Some(ServerMsg::View { view: v, .. }))) =
                    tokio::time::timeout(Duration::from_millis(20), c.recv()).await
                {
                    view_id = v.view_id;
                    views.push(v.members);
                }
            }
            assert!(Instant::now() < until, "no view of both: {views:?}");
        }
        beat(&mut conns, Duration::from_millis(300), &mut views).await;
        views.clear();

        let pid = daemon.pid();
        // SAFETY: signals to our own child process.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        beat(&mut conns, Duration::from_millis(1_500), &mut views).await;
        assert!(views.is_empty(), "the stall changed the view: {views:?}");
        // Both are still members: a message in the view goes round.
        let hello = ClientMsg::Send { view_id, to: None, bytes: b"still here".to_vec() };
        conns[0].send(&hello).await.unwrap();
        for c in conns.iter_mut() {
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(5), c.recv())
                    .await
                    .expect("timely")
                    .expect("io")
                    .expect("open");
                match msg {
                    ServerMsg::Message { bytes, .. } if bytes == b"still here" => break,
                    ServerMsg::Error(e) => panic!("expelled by the stall: {e}"),
                    _ => {}
                }
            }
        }
        drop(daemon);
    }
}

/// `gka member` outlives its daemon: when the daemon is killed it says so, rejoins the daemon
/// restarted on the same address and gets a key there; when the daemon is gone for good it
/// gives up after `--give-up-after` and exits non-zero, saying why.
mod member_recovery {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc::Receiver;
    use std::time::{Duration, Instant};

    use gka_tests::group::identity;

    use super::{start_daemon, Child, GKA};

    fn wait_line(
        lines: &Receiver<String>,
        seen: &mut Vec<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = pred(&l);
                    seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no line for {what}; saw {seen:#?}"),
            }
        }
    }

    #[test]
    fn a_member_rejoins_a_restarted_daemon_and_gives_up_on_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = identity("a");
        a.write(dir.path()).unwrap();
        let (daemon, addr) = start_daemon(dir.path(), "127.0.0.1:0");
        let mut member = Child(
            Command::new(GKA)
                .args(["member", "--daemon", &addr, "--group", "g", "--id", "a"])
                .args(["--key", dir.path().join("a.key").to_str().unwrap()])
                .args(["--trust", dir.path().to_str().unwrap(), "--give-up-after", "3"])
                .args(["--plugins", gka_tests::artifacts::plugin_dir().to_str().unwrap()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("gka member starts"),
        );
        let stdout = member.0.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        wait_line(&lines, &mut seen, "a first key", |l| l.contains("] key "));
        drop(daemon);
        wait_line(&lines, &mut seen, "the disconnect", |l| l.contains("disconnected"));
        let (daemon, _) = start_daemon(dir.path(), &addr);
        wait_line(&lines, &mut seen, "the rejoin", |l| l.contains("rejoined"));
        wait_line(&lines, &mut seen, "a key from the new daemon", |l| l.contains("] key "));
        drop(daemon);
        wait_line(&lines, &mut seen, "giving up", |l| l.contains("gave up"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = member.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the member did not exit; saw {seen:#?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(3), "gave up: the status that says so");
        let mut stderr = String::new();
        std::io::Read::read_to_string(member.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains("could not rejoin") && stderr.contains("--give-up-after 3"),
            "{stderr}"
        );
    }
}

/// What a client controls cannot blow up the daemon's memory: ten connections that each send
/// a join with a 4 MiB group name (before proving anything), and a joined client that sends
/// forty 4 MiB broadcasts and never reads, leave the daemon's peak resident memory under 64 MB,
/// and it goes on serving.
mod daemon_memory {
    use std::time::Duration;

    use gka_host::net::wire::{ClientMsg, ServerMsg};
    use gka_host::net::Connection;
    use gka_tests::group::identity;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::start_daemon;

    /// The daemon's peak resident set, from /proc.
    fn peak_rss_kib(pid: libc::pid_t) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).expect("a figure").parse().expect("kB")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_names_and_a_client_that_does_not_read_stay_bounded() {
        let trust = tempfile::tempdir().unwrap();
        for id in ["a", "b", "c"] {
            identity(id).write(trust.path()).unwrap();
        }
        let (daemon, addr) = start_daemon(trust.path(), "127.0.0.1:0");
        let before = peak_rss_kib(daemon.pid());

        // Ten unauthenticated joins with 4 MiB names, at once.
        let name = "g".repeat(4 << 20);
        let mut raws = Vec::new();
        for _ in 0..10 {
            let join = ClientMsg::Join {
                group: name.clone(),
                member: "a".into(),
                proof: vec![],
                certificate: None,
            };
            let frame = gka_host::net::wire::encode(&join);
            let addr = addr.clone();
            raws.push(tokio::spawn(async move {
                let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let _ = raw.write_all(&(frame.len() as u32).to_be_bytes()).await;
                let _ = raw.write_all(&frame).await;
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
                    .await;
                String::from_utf8_lossy(&answer).into_owned()
            }));
        }
        for r in raws {
            let answer = r.await.unwrap();
            assert!(answer.contains("bad frame"), "refused before it is read whole: {answer:?}");
        }

        // A reader, and a sender that never reads.
        let mut reader = Connection::join(&addr, "g", &identity("a")).await.unwrap();
        let mut sender = Connection::join(&addr, "g", &identity("b")).await.unwrap();
        let view_id = loop {
            if let Some(ServerMsg::View { view, .. }) = sender.recv().await.unwrap() {
                if view.members.len() == 2 {
                    break view.view_id;
                }
            }
        };
        let drain = tokio::spawn(async move {
            let mut got = 0usize;
            while let Ok(Ok(Some(msg))) =
                tokio::time::timeout(Duration::from_secs(5), reader.recv()).await
            {
                if let ServerMsg::Message { bytes, .. } = msg {
                    got += bytes.len();
                }
            }
            got
        });
        let mut sent = 0;
        for _ in 0..40 {
            let send = ClientMsg::Send { view_id, to: None, bytes: vec![7; 4 << 20] };
            if sender.send(&send).await.is_err() {
                break;
            }
            sent += 1;
        }
        let received = drain.await.unwrap();
        let peak = peak_rss_kib(daemon.pid());
        assert!(
            peak < 64 * 1024,
            "peak RSS {peak} KiB (at start {before} KiB); {sent} broadcasts sent, {received} bytes read"
        );
        // Still serving.
        let _c = Connection::join(&addr, "g2", &identity("c")).await.expect("the daemon serves");
        eprintln!("daemon peak RSS {peak} KiB (start {before} KiB), {sent} x 4 MiB sent");
    }
}

/// The chaos soak, short: eight member processes and a daemon on loopback for 20 s, with
/// members killed mid-rekey and restarted, a 4 s daemon stop and a daemon restart. Divergent
/// epochs, lost lines, duplicates and data under a departed member's epoch must all be 0
/// (`gka bench chaos` fails otherwise). The closing notes give a 10-minute run's figures.
#[test]
fn a_short_chaos_soak_finds_nothing() {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(GKA)
        .args(["bench", "chaos", "--members", "8", "--seconds", "20", "--seed", "7"])
        .arg("--out")
        .arg(out.path())
        .arg("--plugins")
        .arg(gka_tests::artifacts::plugin_dir())
        .output()
        .expect("gka runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for what in ["divergent epochs", "lines lost", "duplicate deliveries", "departed member"] {
        let line = stdout.lines().find(|l| l.contains(what)).expect("the report has the line");
        assert!(line.ends_with("| 0 |"), "{line}");
    }
    let killed = stdout.lines().find(|l| l.contains("members killed")).expect("kills");
    assert!(!killed.ends_with("| 0 |"), "the soak killed nobody: {stdout}");
}

/// `gka ca`: a domain CA is made once (its key is never replaced without `--force`), issues
/// member certificates for a new or an existing key, names the roles asked for, and revokes a
/// member in a new signed revocation list that `gka ca show` reads back; `gka access check`
/// accepts rules naming that CA and reports a broken rule with its line and column.
mod certificate_authority {
    use std::path::Path;
    use std::process::Command;

    use super::GKA;

    fn gka(args: &[&str]) -> (bool, String) {
        let o = Command::new(GKA).args(args).output().expect("gka runs");
        let text =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        (o.status.success(), text)
    }

    fn p(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    #[test]
    fn a_domain_ca_issues_shows_and_revokes() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, out) = (tmp.path().join("red"), tmp.path().join("out"));
        assert!(gka(&["ca", "init", "--domain", "red", "--dir", p(&ca)]).0);
        let (ok, text) = gka(&["ca", "init", "--domain", "red", "--dir", p(&ca)]);
        assert!(!ok && text.contains("--force"), "{text}");
        let (ok, text) = gka(&[
            "ca",
            "issue",
            "--dir",
            p(&ca),
            "--id",
            "alice",
            "--role",
            "member",
            "--role",
            "operator",
            "--out",
            p(&out),
        ]);
        assert!(ok && text.contains("roles member,operator"), "{text}");
        assert!(gka(&["keygen", "--id", "bob", "--out", p(&out)]).0);
        let bob_pub = out.join("bob.pub");
        let (ok, text) = gka(&[
            "ca",
            "issue",
            "--dir",
            p(&ca),
            "--id",
            "bob",
            "--public",
            p(&bob_pub),
            "--out",
            p(&out),
        ]);
        assert!(ok, "{text}");
        let (ok, text) = gka(&["ca", "show", p(&out.join("alice.crt"))]);
        assert!(
            ok && text.contains("domain:   red") && text.contains("member, operator"),
            "{text}"
        );
        let serial = text.lines().find_map(|l| l.strip_prefix("  serial:   ")).unwrap().to_owned();
        let (ok, text) =
            gka(&["ca", "issue", "--dir", p(&ca), "--id", "c", "--role", "king", "--out", p(&out)]);
        assert!(!ok && text.contains("unknown role"), "{text}");
        assert!(gka(&["ca", "revoke", "--dir", p(&ca), "--id", "alice"]).0);
        let (ok, text) = gka(&["ca", "show", p(&ca.join("crl.pem"))]);
        assert!(ok && text.contains(&serial) && text.contains("number:   2"), "{text}");
        let (ok, text) = gka(&["ca", "revoke", "--dir", p(&ca), "--id", "nobody"]);
        assert!(!ok && text.contains("no certificate was issued"), "{text}");

        // Access rules naming that CA check; a broken one is reported with line and column.
        let rules = tmp.path().join("access.toml");
        let good = "[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n\n[[group]]\nname = \"lab\"\ndomains = [\"red\"]\n";
        std::fs::write(&rules, good).unwrap();
        let (ok, text) = gka(&["access", "check", p(&rules)]);
        assert!(ok && text.contains("1 domain(s): red"), "{text}");
        std::fs::write(&rules, good.replace("[\"red\"]", "[\"red\", \"blue\"]")).unwrap();
        let (ok, text) = gka(&["access", "check", p(&rules)]);
        assert!(!ok && text.contains("access.toml:7:19: unknown domain \"blue\""), "{text}");
    }
}

/// A daemon started with `--access` follows its rules, CA certificates and revocation lists
/// without a restart: a member issued after it started is admitted, a member revoked while it
/// runs is refused at its next join, and a broken edit of the rules leaves the previous ones
/// in force.
mod live_access_rules {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use gka_host::identity::cert::der_of_pem;
    use gka_host::identity::Identity;
    use gka_host::net::Connection;

    use super::{Child, GKA};

    fn gka(args: &[&str]) {
        let o = Command::new(GKA).args(args).output().expect("gka runs");
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    async fn join(addr: &str, keys: &Path, id: &str) -> Result<Connection, String> {
        let identity = Identity::load(&keys.join(format!("{id}.key"))).unwrap();
        let pem = std::fs::read_to_string(keys.join(format!("{id}.crt"))).unwrap();
        let der = der_of_pem(&pem, "CERTIFICATE").unwrap();
        Connection::join_presenting(addr, "lab", &identity, Some(&der))
            .await
            .map_err(|e| e.to_string())
    }

    /// Joins until `want` holds for the outcome (the daemon re-reads its rules every second).
    async fn until(
        addr: &str,
        keys: &Path,
        id: &str,
        want: impl Fn(&Result<Connection, String>) -> bool,
    ) -> Result<Connection, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = join(addr, keys, id).await;
            if want(&r) || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rules_and_revocations_apply_without_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, keys) = (tmp.path().join("red"), tmp.path().join("keys"));
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        gka(&["ca", "init", "--domain", "red", "--dir", &s(&ca)]);
        gka(&["ca", "issue", "--dir", &s(&ca), "--id", "bob", "--out", &s(&keys)]);
        let rules = tmp.path().join("access.toml");
        let text = "[domain.red]\nca = \"red/ca.crt\"\ncrl = \"red/crl.pem\"\n[[group]]\nname = \"lab\"\ndomains = [\"red\"]\n";
        std::fs::write(&rules, text).unwrap();
        let mut daemon = Child(
            Command::new(GKA)
                .args(["daemon", "--listen", "127.0.0.1:0", "--access", &s(&rules)])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("gka daemon starts"),
        );
        // Read the address, then keep reading (the daemon reports reloads on stdout).
        let mut out = BufReader::new(daemon.0.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
        std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});

        join(&addr, &keys, "bob").await.expect("bob, issued before the start");
        gka(&["ca", "issue", "--dir", &s(&ca), "--id", "carol", "--out", &s(&keys)]);
        until(&addr, &keys, "carol", Result::is_ok).await.expect("carol, issued after the start");
        gka(&["ca", "revoke", "--dir", &s(&ca), "--id", "bob"]);
        let refused = until(&addr, &keys, "bob", Result::is_err).await.expect_err("bob is revoked");
        assert!(refused.contains("revoked"), "{refused}");
        // A broken edit: the previous rules stay (carol still joins, bob is still refused).
        std::fs::write(&rules, "[domain.red\n").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        join(&addr, &keys, "carol").await.expect("the previous rules stay");
        assert!(join(&addr, &keys, "bob").await.is_err());
        drop(daemon);
    }
}
