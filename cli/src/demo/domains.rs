//! The demo's parties: two domains, `red` and `blue`, each with its own CA, and access rules
//! that let both into every group. Members alternate between them; the operator that injects
//! the demo's faults is a red `operator`.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use gka_host::identity::access::AccessRules;
use gka_host::identity::cert::{DomainCa, Role};
use gka_host::identity::Identity;
use time::OffsetDateTime;

/// The rules every demo member and the daemon read (paths relative to the rules' directory).
const RULES: &str = "operators = [\"red\"]\n\
                     [domain.red]\nca = \"red.crt\"\ncrl = \"red.crl\"\n\
                     [domain.blue]\nca = \"blue.crt\"\ncrl = \"blue.crl\"\n\
                     [[group]]\nname = \"*\"\ndomains = [\"red\", \"blue\"]\n";

/// Two domains' CAs and the rules that trust both.
pub(super) struct Domains {
    red: DomainCa,
    blue: DomainCa,
    rules: AccessRules,
    issued: u64,
}

impl Domains {
    /// Makes both CAs (in memory; the rules are read from a temporary directory, as a member
    /// reads its own).
    pub(super) fn new() -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let red = DomainCa::create("red", now, 1, [1; 16]).context("cannot make red's CA")?;
        let blue = DomainCa::create("blue", now, 1, [2; 16]).context("cannot make blue's CA")?;
        let dir = tempfile::tempdir().context("cannot make a directory for the demo's rules")?;
        for (name, ca) in [("red", &red), ("blue", &blue)] {
            std::fs::write(dir.path().join(format!("{name}.crt")), ca.cert_pem())?;
            let crl = ca.revocation_list(&[], now, 1, 1)?;
            std::fs::write(dir.path().join(format!("{name}.crl")), crl)?;
        }
        let rules = AccessRules::parse(RULES, dir.path())
            .map_err(|e| anyhow::anyhow!("the demo's access rules: {e:?}"))?;
        Ok(Self { red, blue, rules, issued: 0 })
    }

    /// The access rules.
    pub(super) fn rules(&self) -> &AccessRules {
        &self.rules
    }

    /// A certificate (DER) for `identity` with `roles`, from red or blue in turn (an operator
    /// always from red).
    pub(super) fn issue(&mut self, identity: &Identity, roles: &[Role]) -> Result<Vec<u8>> {
        self.issued += 1;
        let ca = if self.issued % 2 == 1 || roles.contains(&Role::Operator) {
            &self.red
        } else {
            &self.blue
        };
        let mut serial = [0u8; 16];
        serial[8..].copy_from_slice(&self.issued.to_be_bytes());
        let roles: BTreeSet<Role> = roles.iter().copied().collect();
        let now = OffsetDateTime::now_utc();
        let issued = ca
            .issue(identity.id(), identity.public(), &roles, now, 1, serial)
            .with_context(|| format!("cannot issue {}'s certificate", identity.id()))?;
        Ok(issued.der)
    }
}
