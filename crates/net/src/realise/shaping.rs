//! Bandwidth caps of elastic IPs: an HTB root with one class per capped address on the
//! uplink (inbound: host end; outbound: router end). Classification is done by nftables
//! (`meta priority set`), so there are no tc filters to keep in sync.
use super::observe::parse_json;
use super::{Cmd, RealiseError, Realiser, Runner};
use crate::nft;
use crate::plan::HostPlan;
use std::collections::BTreeMap;

impl<R: Runner> Realiser<R> {
    /// Inbound shaping on the host end of every uplink.
    pub(super) fn shape_uplinks(&self, plan: &HostPlan) -> Result<usize, RealiseError> {
        let mut changes = 0;
        for v in &plan.vpcs {
            if let Some(u) = &v.uplink {
                changes += self.apply_tc(self.ns(), &u.host_dev, &shaping_classes(plan, v.vni))?;
            }
        }
        Ok(changes)
    }

    /// An HTB root with one class per capped address (`classes`: classid, Mbit/s), or no
    /// HTB at all when nothing is capped.
    pub(super) fn apply_tc(
        &self,
        ns: Option<&str>,
        dev: &str,
        classes: &[(String, u32)],
    ) -> Result<usize, RealiseError> {
        let q = self.run(Cmd::new(ns, &["tc", "-j", "qdisc", "show", "dev", dev]))?;
        let is_htb = parse_json("tc qdisc show", &q)?.iter().any(|q| {
            q["root"].as_bool() == Some(true) && q["kind"] == "htb" && q["handle"] == "1:"
        });
        let mut cmds: Vec<Vec<String>> = Vec::new();
        if classes.is_empty() {
            if is_htb {
                cmds.push(tc(&format!("qdisc del dev {dev} root")));
            }
        } else {
            let have = if is_htb {
                self.htb_classes(ns, dev)?
            } else {
                cmds.push(tc(&format!(
                    "qdisc replace dev {dev} root handle 1: htb default 0"
                )));
                BTreeMap::new()
            };
            class_changes(&mut cmds, dev, &have, classes);
        }
        for c in &cmds {
            let argv: Vec<&str> = c.iter().map(String::as_str).collect();
            self.run(Cmd::new(ns, &argv))?;
        }
        Ok(cmds.len())
    }

    /// The HTB classes of a device: classid → rate in bit/s. (`tc -j class show` prints no
    /// JSON for htb here: parse the text.)
    fn htb_classes(
        &self,
        ns: Option<&str>,
        dev: &str,
    ) -> Result<BTreeMap<String, f64>, RealiseError> {
        let mut have: BTreeMap<String, f64> = BTreeMap::new();
        let out = self.run(Cmd::new(ns, &["tc", "class", "show", "dev", dev]))?;
        for l in out.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            let rate = w
                .iter()
                .position(|x| *x == "rate")
                .and_then(|i| w.get(i + 1))
                .and_then(|r| parse_rate(r));
            if let (Some("htb"), Some(id), Some(r)) = (w.get(1).copied(), w.get(2), rate) {
                have.insert(id.to_string(), r);
            }
        }
        Ok(have)
    }
}

/// A `tc …` command line.
fn tc(args: &str) -> Vec<String> {
    std::iter::once("tc".to_string())
        .chain(args.split(' ').map(String::from))
        .collect()
}

/// Classes to (re)set (rate off by more than 1 %) and to delete.
fn class_changes(
    cmds: &mut Vec<Vec<String>>,
    dev: &str,
    have: &BTreeMap<String, f64>,
    classes: &[(String, u32)],
) {
    for (id, mbit) in classes {
        let want = f64::from(*mbit) * 1e6;
        if have.get(id).is_none_or(|r| (r - want).abs() > want * 0.01) {
            cmds.push(tc(&format!(
                "class replace dev {dev} parent 1: classid {id} htb rate {mbit}mbit ceil {mbit}mbit"
            )));
        }
    }
    for id in have.keys() {
        if !classes.iter().any(|(c, _)| c == id) {
            cmds.push(tc(&format!("class del dev {dev} classid {id}")));
        }
    }
}

/// HTB classes (classid, Mbit/s) of a VPC's capped elastic IPs on this host.
pub(super) fn shaping_classes(plan: &HostPlan, vni: u32) -> Vec<(String, u32)> {
    nft::shaping(plan)
        .into_iter()
        .filter(|s| s.vni == vni)
        .map(|s| (s.classid, s.mbit))
        .collect()
}

/// A tc rate as printed (`20Mbit`, `1Gbit`, `500Kbit`, `1500bit`) in bit/s.
fn parse_rate(s: &str) -> Option<f64> {
    let i = s.find(|c: char| c.is_ascii_alphabetic())?;
    let n: f64 = s[..i].parse().ok()?;
    let mul = match &s[i..] {
        "bit" => 1.0,
        "Kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        _ => return None,
    };
    Some(n * mul)
}
