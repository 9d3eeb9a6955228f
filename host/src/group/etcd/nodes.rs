//! The etcd nodes a member talks to: one at a time, moving on to the next when the one it
//! talks to stops answering.
//!
//! A member talks to a single node rather than spreading requests over all of them: when a
//! node is cut off by a network split, its connections are not reset but silent, and a member
//! must notice within a fraction of its lease and move its watch and lease to a node that
//! answers. The member's lease keep-alives are the probe (see `background.rs`); etcd refuses
//! HTTP/2 pings more often than every 5 s, so transport pings are only a backstop.

// Connecting is IO; the clock bounds each request.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use rand_core::{OsRng, RngCore};

use super::config::EtcdConfig;

/// An error naming what was being done.
pub(super) fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Runs `request`, failing after `limit`.
pub(super) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    request: impl Future<Output = Result<T, E>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(other(what, e)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer from etcd within {limit:?}"),
        )),
    }
}

/// A member's clients of every configured node, and the one it talks to now, shared by its
/// background task (which moves it) and its sender.
#[derive(Clone)]
pub(super) struct Nodes {
    urls: Arc<[String]>,
    clients: Arc<[Client]>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").field("endpoints", &self.urls).finish_non_exhaustive()
    }
}

fn options(config: &EtcdConfig) -> ConnectOptions {
    let ttl = config.timing.lease_ttl();
    let mut options = ConnectOptions::new()
        .with_require_leader(true)
        .with_connect_timeout(config.timing.request_timeout.min(ttl))
        // Within etcd's 5 s minimum between pings (--grpc-keepalive-min-time).
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    if let Some(tls) = &config.tls {
        let mut t = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(tls.ca_pem.as_bytes()));
        if let Some((cert, key)) = &tls.client {
            t = t.identity(etcd_client::Identity::from_pem(cert.as_bytes(), key.as_bytes()));
        }
        if let Some(domain) = &tls.domain {
            t = t.domain_name(domain.clone());
        }
        options = options.with_tls(t);
    }
    options
}

async fn client_of(config: &EtcdConfig, url: &str) -> io::Result<Client> {
    within(
        config.timing.request_timeout,
        &format!("connecting to etcd at {url}"),
        Client::connect([url], Some(options(config))),
    )
    .await
}

impl Nodes {
    /// Clients of every one of `config`'s nodes (a URL or TLS setting that does not build one
    /// is an error now, not at a fail-over), using one drawn at random so that members spread
    /// over the cluster. Clients connect lazily: a node that does not answer shows at the first
    /// request.
    pub(super) async fn connect(config: &EtcdConfig) -> io::Result<Self> {
        if config.endpoints.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no etcd endpoint given"));
        }
        let mut clients = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            clients.push(client_of(config, url).await?);
        }
        let first = usize::try_from(OsRng.next_u32()).unwrap_or_default() % clients.len();
        Ok(Self {
            urls: config.endpoints.clone().into(),
            clients: clients.into(),
            current: Arc::new(AtomicUsize::new(first)),
        })
    }

    fn node(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.clients.len()
    }

    /// The client of the node in use.
    pub(super) fn client(&self) -> Client {
        self.clients[self.node()].clone()
    }

    /// The URL of the node in use.
    pub(super) fn url(&self) -> &str {
        &self.urls[self.node()]
    }

    /// Moves on to the next node (in the configured order, after the one in use).
    pub(super) fn fail_over(&self) {
        self.current.store((self.node() + 1) % self.clients.len(), Ordering::Relaxed);
    }
}
