//! Reading the current state: links, addresses, neighbours, FDB, routes, policy rules, the
//! nft tables, and which member port announces a shared VIP.
use super::{Cmd, RealiseError, Realiser, Runner};
use crate::names::NFT_TABLE;
use crate::plan::HostPlan;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A VIP announcement older than this (seconds since the bridge last saw the VIP's MAC on
/// a member port) is not news.
pub const VIP_FRESH_SECS: u64 = 10;

/// A link as `ip -j -d link` shows it.
#[derive(Debug, Clone, Default)]
pub(super) struct Link {
    pub(super) kind: String,
    pub(super) master: Option<String>,
    pub(super) up: bool,
    pub(super) mtu: u64,
    pub(super) mac: String,
    pub(super) data: Value,
    pub(super) slave: Value,
}

/// Static FDB entries: (dev, mac, dst) towards a VTEP, (dev, mac) on a bridge port.
pub(super) type Tunnels = BTreeSet<(String, String, String)>;
pub(super) type Masters = BTreeSet<(String, String)>;
/// Permanent neighbours: (dev, ip) → MAC.
pub(super) type Neighbours = BTreeMap<(String, String), String>;

pub(super) fn parse_json(cmd: &str, out: &str) -> Result<Vec<Value>, RealiseError> {
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    match serde_json::from_str::<Value>(out) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(_) => Err(RealiseError::Parse {
            cmd: cmd.into(),
            reason: "not a JSON array".into(),
        }),
        Err(e) => Err(RealiseError::Parse {
            cmd: cmd.into(),
            reason: e.to_string(),
        }),
    }
}

pub(super) fn links_of(v: &[Value]) -> BTreeMap<String, Link> {
    v.iter()
        .filter_map(|l| {
            let name = l["ifname"].as_str()?.to_string();
            let li = &l["linkinfo"];
            Some((
                name,
                Link {
                    kind: li["info_kind"].as_str().unwrap_or_default().to_string(),
                    master: l["master"].as_str().map(String::from),
                    up: l["flags"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x == "UP")),
                    mtu: l["mtu"].as_u64().unwrap_or(0),
                    mac: l["address"].as_str().unwrap_or_default().to_string(),
                    data: li["info_data"].clone(),
                    slave: li["info_slave_data"].clone(),
                },
            ))
        })
        .collect()
}

/// IPv4 addresses (`ip/len`) per interface, from `ip -j addr show`.
pub(super) fn inet_addrs_of(raw: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut addrs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in raw {
        let Some(name) = l["ifname"].as_str() else {
            continue;
        };
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if a["family"] == "inet" {
                addrs.entry(name.into()).or_default().insert(format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"].as_u64().unwrap_or(0)
                ));
            }
        }
    }
    addrs
}

/// The permanent neighbours of `ip -j neigh show`.
pub(super) fn permanent_neighbours(v: &[Value]) -> Neighbours {
    let mut have = Neighbours::new();
    for n in v {
        let (Some(dev), Some(ip)) = (n["dev"].as_str(), n["dst"].as_str()) else {
            continue;
        };
        let permanent = n["state"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"));
        if permanent {
            have.insert(
                (dev.into(), ip.into()),
                n["lladdr"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    have
}

/// The tunnel entries and the static bridge-port entries of `bridge -j fdb show`.
pub(super) fn fdb_of(v: &[Value]) -> (Tunnels, Masters) {
    let mut have_tunnel = Tunnels::new();
    let mut have_master = Masters::new();
    for e in v {
        let (Some(dev), Some(mac)) = (e["ifname"].as_str(), e["mac"].as_str()) else {
            continue;
        };
        let flags: Vec<&str> = e["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let is_self = flags.contains(&"self") || e["master"].is_null();
        if let Some(dst) = e["dst"].as_str() {
            have_tunnel.insert((dev.into(), mac.into(), dst.into()));
        } else if !is_self && e["state"].as_str() == Some("static") {
            have_master.insert((dev.into(), mac.into()));
        }
    }
    (have_tunnel, have_master)
}

/// Routes of a table as canonical `dst [via gw] dev dev` lines.
/// A route's destination as `ip -j route` lists it, as a CIDR (`default` → `0.0.0.0/0`,
/// a bare address → `/32`).
pub(super) fn route_dst(r: &Value) -> Option<String> {
    Some(match r["dst"].as_str()? {
        "default" => "0.0.0.0/0".to_string(),
        d if d.contains('/') => d.to_string(),
        d => format!("{d}/32"),
    })
}

pub(super) fn routes_of(v: &[Value]) -> BTreeSet<String> {
    v.iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let dev = r["dev"].as_str()?;
            Some(match r["gateway"].as_str() {
                Some(gw) => format!("{dst} via {gw} dev {dev}"),
                None => format!("{dst} dev {dev}"),
            })
        })
        .collect()
}

/// Policy rules as (priority, canonical selector + table) pairs.
pub(super) fn rules_of(v: &[Value]) -> Vec<(u64, String, String)> {
    v.iter()
        .filter_map(|r| {
            let pref = r["priority"].as_u64()?;
            let table = match &r["table"] {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let mut sel = Vec::new();
            if let Some(src) = r["src"].as_str().filter(|s| *s != "all") {
                sel.push(format!("from {src}/{}", r["srclen"].as_u64().unwrap_or(32)));
            }
            if let Some(dst) = r["dst"].as_str() {
                sel.push(format!("to {dst}/{}", r["dstlen"].as_u64().unwrap_or(32)));
            }
            if let Some(dev) = r["iif"].as_str() {
                sel.push(format!("iif {dev}"));
            }
            if let Some(m) = r["fwmark"].as_str() {
                sel.push(format!("fwmark {m}"));
            }
            Some((pref, sel.join(" "), table))
        })
        .collect()
}

impl<R: Runner> Realiser<R> {
    /// The links of a namespace (`ip -j -d link show`).
    pub(super) fn links(&self, ns: Option<&str>) -> Result<BTreeMap<String, Link>, RealiseError> {
        let out = self.run(Cmd::new(ns, &["ip", "-j", "-d", "link", "show"]))?;
        Ok(links_of(&parse_json("ip link show", &out)?))
    }

    /// The permanent neighbours of a namespace.
    pub(super) fn neighbours(&self, ns: Option<&str>) -> Result<Neighbours, RealiseError> {
        let out = self.run(Cmd::new(ns, &["ip", "-j", "neigh", "show"]))?;
        Ok(permanent_neighbours(&parse_json("ip neigh show", &out)?))
    }

    /// The FDB of the host namespace: tunnel and static bridge-port entries.
    pub(super) fn fdb(&self) -> Result<(Tunnels, Masters), RealiseError> {
        let out = self.run(Cmd::new(self.ns(), &["bridge", "-j", "fdb", "show"]))?;
        Ok(fdb_of(&parse_json("bridge fdb show", &out)?))
    }

    /// The routes of a table as canonical lines (empty if the table does not exist: then
    /// `ip -j` fails after printing an unterminated list).
    pub(super) fn route_table(
        &self,
        ns: Option<&str>,
        t: u32,
    ) -> Result<BTreeSet<String>, RealiseError> {
        let out = self.run(
            Cmd::new(ns, &["ip", "-j", "route", "show", "table", &t.to_string()]).tolerant(),
        )?;
        if out.trim() == "[" {
            return Ok(BTreeSet::new());
        }
        Ok(routes_of(&parse_json("ip route show", &out)?))
    }

    /// The policy rules of a namespace (see [`rules_of`]).
    pub(super) fn rules(
        &self,
        ns: Option<&str>,
    ) -> Result<BTreeSet<(u64, String, String)>, RealiseError> {
        let out = self.run(Cmd::new(ns, &["ip", "-j", "rule", "show"]))?;
        Ok(rules_of(&parse_json("ip rule show", &out)?)
            .into_iter()
            .collect())
    }

    /// Both of our tables as `nft` lists them (empty text for a missing one).
    pub(super) fn nft_listing(&self) -> Result<String, RealiseError> {
        let mut s = String::new();
        for family in ["inet", "bridge"] {
            s.push_str(&self.run(
                Cmd::new(self.ns(), &["nft", "list", "table", family, NFT_TABLE]).tolerant(),
            )?);
        }
        Ok(s)
    }

    /// Which local member port announces each shared VIP now: the VPC bridge saw a frame
    /// from the VIP's MAC on that member's device within [`VIP_FRESH_SECS`] (a holder sends
    /// from the VIP MAC: gratuitous ARP on takeover, then its replies). Returns
    /// (vip id, port id), sorted. The agent reports these to the controller, which
    /// recompiles (the holder's MAC moves in every host's FDB); probe before re-applying
    /// the current plan, which moves the VIP MAC back where the plan says it is.
    pub fn vip_holders(&self, plan: &HostPlan) -> Result<Vec<(String, String)>, RealiseError> {
        let mut out = BTreeSet::new();
        for v in plan
            .vpcs
            .iter()
            .filter(|v| v.vips.iter().any(|x| !x.local_members.is_empty()))
        {
            let fdb = self.run(Cmd::new(
                self.ns(),
                &["bridge", "-s", "-j", "fdb", "show", "br", &v.bridge],
            ))?;
            for e in parse_json("bridge fdb show", &fdb)? {
                let (Some(mac), Some(dev)) = (e["mac"].as_str(), e["ifname"].as_str()) else {
                    continue;
                };
                if e["updated"].as_u64().is_none_or(|u| u > VIP_FRESH_SECS) {
                    continue;
                }
                for vip in &v.vips {
                    if !mac.eq_ignore_ascii_case(&vip.mac.to_string()) {
                        continue;
                    }
                    if let Some((port, _)) = vip.local_members.iter().find(|(_, d)| d == dev) {
                        out.insert((vip.id.clone(), port.clone()));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
