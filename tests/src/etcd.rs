//! etcd clusters of our own for tests: one or three `etcd` processes from Debian's
//! `etcd-server` package, on free loopback ports, with data in a temporary directory, stopped
//! when dropped. A test that needs etcd and finds no binary fails, naming the install command.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the binary, for the failure message.
pub const INSTALL: &str = "apt-get install etcd-server";

/// The `etcd` binary: `$ETCD_BIN`, or `etcd` on the `PATH`.
///
/// # Panics
///
/// When there is none, naming [`INSTALL`].
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("etcd")).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs etcd and found no `etcd` binary on the PATH (or in $ETCD_BIN): \
             install it with `{INSTALL}` (Debian's etcd-server package), as .ci/run does"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// TLS settings of a cluster: the server's certificate and key, and the CA file client
/// certificates must chain to (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate (PEM), for 127.0.0.1.
    pub cert_pem: String,
    /// Its key (PKCS#8 PEM).
    pub key_pem: String,
    /// The CA certificates (PEM) client certificates are checked against.
    pub client_ca_pem: String,
}

impl ServerTls {
    /// A server certificate for 127.0.0.1 from a fresh CA, with client certificates checked
    /// against `client_ca_pem`; returns the settings and the server CA's certificate (PEM), for
    /// the clients to check the server with.
    pub fn loopback(client_ca_pem: &str) -> (Self, String) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("the server CA");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("a key");
        let mut server = CertificateParams::new(Vec::<String>::new()).expect("params");
        server.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &issuer).expect("the server certificate");
        let tls = Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_ca_pem: client_ca_pem.to_owned(),
        };
        (tls, ca_cert.pem())
    }
}

/// A running etcd cluster (see the module docs).
#[derive(Debug)]
pub struct EtcdCluster {
    nodes: Vec<Child>,
    /// The client URLs, one per node.
    pub client_urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `nodes` nodes (1 or 3, say) with a 100 ms heartbeat and a 500 ms election
    /// timeout (so leases of 1 s are allowed), and waits until the cluster answers.
    ///
    /// # Panics
    ///
    /// When etcd is missing or the cluster does not answer within 30 s.
    pub fn start(nodes: usize) -> Self {
        Self::start_with(nodes, None)
    }

    /// As [`Self::start`], serving clients over TLS with client certificates required.
    pub fn start_with(nodes: usize, tls: Option<&ServerTls>) -> Self {
        let binary = binary();
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("gka-etcd").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("gka-etcd").tempdir()
        }
        .expect("a temporary directory");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let peers: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let clients: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let initial: Vec<String> =
            peers.iter().enumerate().map(|(i, p)| format!("n{i}=http://127.0.0.1:{p}")).collect();
        let initial = initial.join(",");
        let tls_files = tls.map(|t| {
            let write = |name: &str, text: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).expect("a TLS file");
                path
            };
            (
                write("server.pem", &t.cert_pem),
                write("server.key", &t.key_pem),
                write("clients-ca.pem", &t.client_ca_pem),
            )
        });
        let mut children = Vec::new();
        for i in 0..nodes {
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).expect("a log");
            let url = format!("{scheme}://127.0.0.1:{}", clients[i]);
            let mut cmd = Command::new(&binary);
            cmd.arg(format!("--name=n{i}"))
                .arg(format!("--data-dir={}", dir.path().join(format!("n{i}")).display()))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", peers[i]))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", peers[i]))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=gka-test")
                .arg("--heartbeat-interval=100")
                .arg("--election-timeout=500")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("a log"))
                .stderr(log);
            if let Some((cert, key, ca)) = &tls_files {
                cmd.arg(format!("--cert-file={}", cert.display()))
                    .arg(format!("--key-file={}", key.display()))
                    .arg("--client-cert-auth")
                    .arg(format!("--trusted-ca-file={}", ca.display()));
            }
            children.push(cmd.spawn().unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); install it with `{INSTALL}`", binary.display())
            }));
        }
        let client_urls = clients.iter().map(|p| format!("{scheme}://127.0.0.1:{p}")).collect();
        let cluster = Self { nodes: children, client_urls, dir };
        cluster.wait_ready();
        cluster
    }

    /// Every client URL, comma-separated (as `gka member --etcd` takes them).
    pub fn urls(&self) -> String {
        self.client_urls.join(",")
    }

    /// Waits until every node has a leader (`etcdctl`-free: the health endpoint).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, _) in self.client_urls.iter().enumerate() {
            let port = self.client_urls[i].rsplit(':').next().expect("a port");
            loop {
                if self.healthy(port) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd node n{i} did not become healthy within 30 s; its log:\n{}",
                    std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                        .unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Whether a node answers a health check with a leader. Over TLS, the check only asks
    /// whether the port accepts connections (the test's own client then waits for a leader).
    fn healthy(&self, port: &str) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(format!("127.0.0.1:{port}")) else {
            return false;
        };
        if self.client_urls[0].starts_with("https") {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Stops node `i` (kills its process).
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].kill();
        let _ = self.nodes[i].wait();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
