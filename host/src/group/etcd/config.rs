//! What an etcd member is configured with: where the cluster is, mutual TLS, and timing.

use std::time::Duration;

use super::layout::MAX_MESSAGE;

/// The longest lease, seconds (an hour).
pub const MAX_LEASE_TTL_S: i64 = 3600;

/// The etcd layer's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdTiming {
    /// The member lease's time to live, whole seconds (etcd's minimum is 1.5 times its
    /// election timeout): a member silent this long is removed. The lease is renewed only
    /// while the member's runtime beats (at least every half lease: its heartbeat interval
    /// must be shorter), so a runtime that hangs is removed within one and a half leases.
    pub lease_ttl_s: i64,
    /// How long the coordinator waits after a membership change before it writes the view,
    /// so that simultaneous changes form one view.
    pub settle: Duration,
    /// How long one request to etcd may take before it is retried or fails.
    pub request_timeout: Duration,
}

impl Default for EtcdTiming {
    fn default() -> Self {
        Self {
            lease_ttl_s: 5,
            settle: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Mutual TLS to etcd.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA certificates (PEM) that etcd's server certificates chain to.
    pub ca_pem: String,
    /// The client certificate and key (PEM) this member proves itself with (etcd's
    /// `--client-cert-auth`): a member's certificate from its domain's CA.
    pub client: Option<(String, zeroize::Zeroizing<String>)>,
    /// The name to check etcd's certificates for, when it is not the endpoints' host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Where and how to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The cluster's client URLs (`http://host:2379`, or `https://` with [`Self::tls`]).
    pub endpoints: Vec<String>,
    /// Mutual TLS, if etcd requires it.
    pub tls: Option<EtcdTls>,
    /// Timing.
    pub timing: EtcdTiming,
    /// The largest message this member sends, bytes: at most [`MAX_MESSAGE`], which every
    /// member delivers (etcd's own default request limit is 1.5 MiB).
    pub max_message: usize,
}

impl EtcdConfig {
    /// The default settings for `endpoints`, without TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints, tls: None, timing: EtcdTiming::default(), max_message: MAX_MESSAGE }
    }
}

impl EtcdTiming {
    /// The lease's time to live.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_s.clamp(1, MAX_LEASE_TTL_S).unsigned_abs())
    }
}
