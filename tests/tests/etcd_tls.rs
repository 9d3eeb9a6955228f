//! Members reach etcd over mutual TLS with their identity certificates (etcd's
//! `--client-cert-auth`): a cluster of our own whose client CA is one domain's CA admits that
//! domain's members, which form a group over it, and refuses a member of another domain and a
//! client without a certificate.

use std::collections::BTreeSet;
use std::time::Duration;

use gka_host::group::{Delivery, EtcdConfig, EtcdEndpoint, EtcdTiming, EtcdTls, GroupEndpoint};
use gka_host::identity::cert::{DomainCa, Role};
use gka_host::identity::{Identity, Scheme};
use gka_tests::etcd::{EtcdCluster, ServerTls};
use time::OffsetDateTime;

/// A member of `ca`'s domain: its certificate and key (PEM), as `gka ca issue` and
/// `gka keygen` would write them.
fn member(ca: &DomainCa, id: &str, serial: u8) -> (String, String) {
    let identity = Identity::generate(id, Scheme::Ed25519).expect("an identity");
    let dir = tempfile::tempdir().expect("a directory");
    let (key_file, _) = identity.write(dir.path()).expect("the key files");
    let roles: BTreeSet<Role> = [Role::Member].into();
    let now = OffsetDateTime::now_utc();
    let issued =
        ca.issue(id, identity.public(), &roles, now, 1, [serial; 16]).expect("a certificate");
    (issued.pem, std::fs::read_to_string(key_file).expect("the key"))
}

fn config(cluster: &EtcdCluster, ca_pem: &str, client: Option<(String, String)>) -> EtcdConfig {
    let mut config = EtcdConfig::new(cluster.client_urls.clone());
    config.tls = Some(EtcdTls {
        ca_pem: ca_pem.to_owned(),
        client: client.map(|(cert, key)| (cert, key.into())),
        domain: None,
    });
    config.timing = EtcdTiming {
        lease_ttl_s: 2,
        settle: Duration::from_millis(200),
        request_timeout: Duration::from_secs(3),
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reach_etcd_over_mutual_tls_with_their_identity_certificates() {
    let now = OffsetDateTime::now_utc();
    let red = DomainCa::create("red", now, 1, [1; 16]).expect("red's CA");
    let blue = DomainCa::create("blue", now, 1, [2; 16]).expect("blue's CA");
    let (tls, server_ca) = ServerTls::loopback(&red.cert_pem());
    let cluster = EtcdCluster::start_with(1, Some(&tls));

    let mut endpoints = Vec::new();
    for (i, id) in ["alice", "bob"].into_iter().enumerate() {
        let config = config(&cluster, &server_ca, Some(member(&red, id, i as u8 + 1)));
        let endpoint = EtcdEndpoint::join(&config, "g", id, None)
            .await
            .unwrap_or_else(|e| panic!("{id} of red is admitted by etcd: {e}"));
        endpoints.push(endpoint);
    }
    for endpoint in &mut endpoints {
        let view = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                endpoint.heartbeat().await.expect("a heartbeat");
                match endpoint.recv().await.expect("a delivery") {
                    Some(Delivery::View { view, .. }) if view.members.len() == 2 => break view,
                    Some(_) => continue,
                    None => panic!("the endpoint closed"),
                }
            }
        })
        .await
        .expect("a view of both within 10 s");
        assert_eq!(view.members, ["alice", "bob"]);
    }

    let outsider = config(&cluster, &server_ca, Some(member(&blue, "carol", 3)));
    let refused = EtcdEndpoint::join(&outsider, "g", "carol", None).await;
    let e = refused.expect_err("a member of a domain etcd does not trust is refused");
    eprintln!("refused: {e}");
    let anonymous = config(&cluster, &server_ca, None);
    let refused = EtcdEndpoint::join(&anonymous, "g", "dave", None).await;
    let e = refused.expect_err("a client without a certificate is refused");
    eprintln!("refused: {e}");
    let wrong_server_ca = config(&cluster, &red.cert_pem(), Some(member(&red, "erin", 5)));
    let refused = EtcdEndpoint::join(&wrong_server_ca, "g", "erin", None).await;
    let e = refused.expect_err("a server whose certificate the member cannot check is refused");
    eprintln!("refused: {e}");
}
