//! Network positions for the simulator: sites, the links between them, and where the group
//! layer's sequencer runs. Presets `lan` and `wan`, or a TOML file:
//!
//! ```toml
//! name = "two-sites"
//! sequencer = "east"            # the site of the sequencer (default: the first site)
//!
//! [[site]]
//! name = "east"
//! latency_ms = 0.1              # one way, within the site
//! bandwidth_mbps = 1000
//!
//! [[site]]
//! name = "west"
//!
//! [[link]]                      # between two sites, both ways
//! between = ["east", "west"]
//! latency_ms = 35
//! jitter_ms = 2
//! bandwidth_mbps = 50
//! loss = 0.001
//! ```
//!
//! Members are placed on the sites in turn (member i on site i mod the number of sites).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One direction of a network path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// One-way latency, ms.
    pub latency_ms: f64,
    /// Uniform jitter added to the latency, 0 to this many ms.
    pub jitter_ms: f64,
    /// Bandwidth, Mbit/s.
    pub bandwidth_mbps: f64,
    /// Probability that a transmission is lost (and resent after a timeout).
    pub loss: f64,
}

impl Default for Link {
    fn default() -> Self {
        Self { latency_ms: 0.1, jitter_ms: 0.0, bandwidth_mbps: 1000.0, loss: 0.0 }
    }
}

impl Link {
    fn check(&self, what: &str) -> Result<(), TopologyError> {
        let ok = (0.0..=60_000.0).contains(&self.latency_ms)
            && (0.0..=60_000.0).contains(&self.jitter_ms)
            && (0.001..=1e6).contains(&self.bandwidth_mbps)
            && (0.0..0.5).contains(&self.loss);
        if ok {
            Ok(())
        } else {
            Err(TopologyError::Invalid(format!(
                "{what}: latency and jitter must be 0 to 60000 ms, bandwidth 0.001 to 10^6 \
                 Mbit/s and loss in [0, 0.5)"
            )))
        }
    }
}

/// Why a topology file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Not valid TOML, or not this format.
    #[error("{0}")]
    Parse(String),
    /// Valid TOML with impossible values.
    #[error("{0}")]
    Invalid(String),
}

/// The network: sites, links and the sequencer's site.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Its name (for tables and file names).
    pub name: String,
    /// Site names, with the link within each site.
    pub sites: Vec<(String, Link)>,
    /// Links between sites, by (lower index, higher index).
    pub links: BTreeMap<(usize, usize), Link>,
    /// The site the sequencer runs on.
    pub sequencer: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    name: String,
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    bandwidth_mbps: Option<f64>,
    loss: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterFile {
    between: [String; 2],
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    bandwidth_mbps: Option<f64>,
    loss: Option<f64>,
}

fn link_of(
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    bandwidth_mbps: Option<f64>,
    loss: Option<f64>,
) -> Link {
    let d = Link::default();
    Link {
        latency_ms: latency_ms.unwrap_or(d.latency_ms),
        jitter_ms: jitter_ms.unwrap_or(d.jitter_ms),
        bandwidth_mbps: bandwidth_mbps.unwrap_or(d.bandwidth_mbps),
        loss: loss.unwrap_or(d.loss),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    name: String,
    sequencer: Option<String>,
    site: Vec<SiteFile>,
    #[serde(default)]
    link: Vec<InterFile>,
}

impl Topology {
    /// One machine room: 0.1 ms one way (up to 0.02 ms of jitter), 1 Gbit/s, no loss.
    pub fn lan() -> Self {
        let link = Link { latency_ms: 0.1, jitter_ms: 0.02, bandwidth_mbps: 1000.0, loss: 0.0 };
        Self {
            name: "lan".into(),
            sites: vec![("lan".into(), link)],
            links: BTreeMap::new(),
            sequencer: 0,
        }
    }

    /// Three sites (east and west coast of a continent, and one across an ocean), the
    /// sequencer on the east coast: 35, 45 and 75 ms one way between them, 2 ms of jitter,
    /// 50 Mbit/s and 0.1% loss between sites; LANs within each.
    pub fn wan() -> Self {
        let local = Link { latency_ms: 0.2, jitter_ms: 0.05, bandwidth_mbps: 1000.0, loss: 0.0 };
        let inter =
            |ms: f64| Link { latency_ms: ms, jitter_ms: 2.0, bandwidth_mbps: 50.0, loss: 0.001 };
        Self {
            name: "wan".into(),
            sites: vec![("east".into(), local), ("west".into(), local), ("europe".into(), local)],
            links: BTreeMap::from([
                ((0, 1), inter(35.0)),
                ((0, 2), inter(45.0)),
                ((1, 2), inter(75.0)),
            ]),
            sequencer: 0,
        }
    }

    /// One machine's loopback interface, as the daemon benchmark runs on: 0.03 ms one way,
    /// 10 Gbit/s.
    pub fn loopback() -> Self {
        let link = Link { latency_ms: 0.03, jitter_ms: 0.01, bandwidth_mbps: 10_000.0, loss: 0.0 };
        Self {
            name: "loopback".into(),
            sites: vec![("loopback".into(), link)],
            links: BTreeMap::new(),
            sequencer: 0,
        }
    }

    /// A preset by name (`lan`, `wan`, `loopback`).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "lan" => Some(Self::lan()),
            "wan" => Some(Self::wan()),
            "loopback" => Some(Self::loopback()),
            _ => None,
        }
    }

    /// A preset by name, or else a topology file `name` relative to `dir`.
    pub fn load(name: &str, dir: &std::path::Path) -> Result<Self, TopologyError> {
        if let Some(t) = Self::preset(name) {
            return Ok(t);
        }
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            TopologyError::Invalid(format!(
                "{name:?} is neither lan, wan, loopback nor a readable topology file: {e}"
            ))
        })?;
        Self::parse(&text).map_err(|e| TopologyError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Reads the TOML format of the module docs.
    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        let file: TopologyFile =
            toml::from_str(text).map_err(|e| TopologyError::Parse(e.to_string()))?;
        if file.site.is_empty() {
            return Err(TopologyError::Invalid("a topology needs at least one [[site]]".into()));
        }
        let index = |name: &str| {
            file.site
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| TopologyError::Invalid(format!("no site named {name:?}")))
        };
        let mut sites = Vec::new();
        for s in &file.site {
            if sites.iter().any(|(n, _)| n == &s.name) {
                return Err(TopologyError::Invalid(format!("site {:?} twice", s.name)));
            }
            let link = link_of(s.latency_ms, s.jitter_ms, s.bandwidth_mbps, s.loss);
            link.check(&format!("site {}", s.name))?;
            sites.push((s.name.clone(), link));
        }
        let mut links = BTreeMap::new();
        for l in &file.link {
            let (a, b) = (index(&l.between[0])?, index(&l.between[1])?);
            if a == b {
                return Err(TopologyError::Invalid(format!(
                    "a link from {:?} to itself",
                    l.between[0]
                )));
            }
            let link = link_of(l.latency_ms, l.jitter_ms, l.bandwidth_mbps, l.loss);
            link.check(&format!("link {} - {}", l.between[0], l.between[1]))?;
            if links.insert((a.min(b), a.max(b)), link).is_some() {
                return Err(TopologyError::Invalid(format!(
                    "two [[link]]s between {:?} and {:?}",
                    l.between[0], l.between[1]
                )));
            }
        }
        for a in 0..sites.len() {
            for b in a + 1..sites.len() {
                if !links.contains_key(&(a, b)) {
                    return Err(TopologyError::Invalid(format!(
                        "no [[link]] between {:?} and {:?}",
                        sites[a].0, sites[b].0
                    )));
                }
            }
        }
        let sequencer = match &file.sequencer {
            Some(s) => index(s)?,
            None => 0,
        };
        Ok(Self { name: file.name, sites, links, sequencer })
    }

    /// The site of the i-th member.
    pub fn site_of(&self, member_index: usize) -> usize {
        member_index % self.sites.len()
    }

    /// The path from site `a` to site `b`: within a site, its own link; else the link between
    /// them, after the local links at both ends.
    pub fn path(&self, a: usize, b: usize) -> Link {
        if a == b {
            return self.sites[a].1;
        }
        let inter = self.links[&(a.min(b), a.max(b))];
        let (la, lb) = (self.sites[a].1, self.sites[b].1);
        Link {
            latency_ms: la.latency_ms + inter.latency_ms + lb.latency_ms,
            jitter_ms: la.jitter_ms + inter.jitter_ms + lb.jitter_ms,
            bandwidth_mbps: la.bandwidth_mbps.min(inter.bandwidth_mbps).min(lb.bandwidth_mbps),
            loss: 1.0 - (1.0 - la.loss) * (1.0 - inter.loss) * (1.0 - lb.loss),
        }
    }

    /// The latency of one round of agreed-order broadcast among `n` members placed on the
    /// sites, ms: from the farthest member to the sequencer and back out to it (an agreement
    /// ends when its slowest member is done), with half the jitter; and the lowest bandwidth
    /// on those paths.
    pub fn round_ms_and_bandwidth(&self, n: usize) -> (f64, f64) {
        let mut worst: f64 = 0.0;
        let mut bandwidth = f64::INFINITY;
        for i in 0..n.max(1).min(self.sites.len()) {
            let p = self.path(self.site_of(i), self.sequencer);
            worst = worst.max(p.latency_ms + p.jitter_ms / 2.0);
            bandwidth = bandwidth.min(p.bandwidth_mbps);
        }
        (2.0 * worst, bandwidth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topology_file_is_read_and_every_mistake_is_refused() {
        let text = r#"
name = "two"
sequencer = "west"
[[site]]
name = "east"
[[site]]
name = "west"
latency_ms = 0.5
[[link]]
between = ["west", "east"]
latency_ms = 30
bandwidth_mbps = 10
"#;
        let t = Topology::parse(text).unwrap();
        assert_eq!(t.sequencer, 1);
        assert_eq!(t.site_of(3), 1);
        let p = t.path(0, 1);
        assert!((p.latency_ms - 30.6).abs() < 1e-9);
        assert_eq!(p.bandwidth_mbps, 10.0);
        for (bad, why) in [
            ("name = \"x\"\nsite = []", "at least one"),
            ("name = \"x\"\n[[site]]\nname = \"a\"\n[[site]]\nname = \"b\"\n", "no [[link]]"),
            ("name = \"x\"\n[[site]]\nname = \"a\"\nloss = 0.9\n", "loss"),
            ("name = \"x\"\n[[site]]\nname = \"a\"\nspeed = 1\n", "unknown field"),
            ("name = \"x\"\nsequencer = \"z\"\n[[site]]\nname = \"a\"\n", "no site named"),
        ] {
            let e = Topology::parse(bad).expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn presets_have_their_shape() {
        let wan = Topology::wan();
        assert_eq!(wan.sites.len(), 3);
        let (round, bw) = wan.round_ms_and_bandwidth(3);
        // Europe to the east coast and back: 2 × (0.2 + 45 + 0.2) ms, plus jitter.
        assert!(round > 90.0 && round < 95.0, "{round}");
        assert_eq!(bw, 50.0);
        let (round, _) = Topology::lan().round_ms_and_bandwidth(8);
        assert!(round < 1.0);
    }
}
