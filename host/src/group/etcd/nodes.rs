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
use std::sync::{Arc, Mutex};
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

/// The node a member talks to now, shared by its background task (which moves it) and its
/// sender.
#[derive(Clone)]
pub(super) struct Nodes {
    config: EtcdConfig,
    current: Arc<Mutex<(usize, Client)>>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").field("endpoints", &self.config.endpoints).finish_non_exhaustive()
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
    /// A client of one of `config`'s nodes, drawn at random so that members spread over the
    /// cluster. Clients connect lazily: a node that does not answer shows at the first request.
    pub(super) async fn connect(config: &EtcdConfig) -> io::Result<Self> {
        let n = config.endpoints.len();
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no etcd endpoint given"));
        }
        // A URL or TLS setting that does not build a client is a configuration error: say so
        // now, not at the first fail-over.
        for url in &config.endpoints {
            client_of(config, url).await?;
        }
        let node = usize::try_from(OsRng.next_u32()).unwrap_or_default() % n;
        let client = client_of(config, &config.endpoints[node]).await?;
        Ok(Self { config: config.clone(), current: Arc::new(Mutex::new((node, client))) })
    }

    /// The client of the node in use.
    pub(super) fn client(&self) -> Client {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// The URL of the node in use.
    pub(super) fn url(&self) -> String {
        let node = self.current.lock().unwrap_or_else(|p| p.into_inner()).0;
        self.config.endpoints[node].clone()
    }

    /// Moves on to the next node (in the configured order, after the one in use).
    pub(super) async fn fail_over(&self) {
        let n = self.config.endpoints.len();
        let node = (self.current.lock().unwrap_or_else(|p| p.into_inner()).0 + 1) % n;
        // Every URL built a client when the member joined (see `connect`); should this one not
        // build now, the member stays with the node in use.
        if let Ok(client) = client_of(&self.config, &self.config.endpoints[node]).await {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = (node, client);
        }
    }
}
