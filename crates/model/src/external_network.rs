//! External networks (admin): where elastic IPs and NAT gateway addresses come from, and
//! how each host reaches them. Design note: `docs/network.md` ("External networks").

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::network::{parse_cidr, parse_ip, NetworkPhase};
use crate::{validate_name, ApiError, Kind};

/// Where the all-in-one cloud's default external network (`yunhan up`) lives unless
/// `--public-cidr` says otherwise (DevStack's "public" network uses it too).
pub const DEFAULT_PUBLIC_CIDR: &str = "172.24.4.0/24";
/// The name of that network.
pub const DEFAULT_PUBLIC_NAME: &str = "public";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalNetworkSpec {
    /// The network, e.g. `203.0.113.0/24`; its addresses (but the gateway) are handed out
    /// as elastic IPs. Cannot overlap another external network.
    pub cidr: String,
    /// Its gateway (not handed out); default: the first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The device every host reaches it through (an interface or bridge in the host's
    /// network namespace, e.g. `eth1` or `br-ex`). A host has a leg on the network when its
    /// agent reports that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Per-host devices (host name or id → device), instead of `device` on those hosts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub legs: BTreeMap<String, String>,
    /// The network lives on each host itself: the host's agent makes a bridge holding the
    /// gateway address, and traffic from the network leaves masqueraded through the host's
    /// own default route (a one-box cloud's "public" network, like DevStack's). Every host
    /// has a leg; `device` and `legs` are not used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_gateway: bool,
    /// The addresses handed out as elastic IPs, `FIRST-LAST` inside the CIDR (e.g.
    /// `203.0.113.10-203.0.113.99`); absent: every host address but the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalNetworkStatus {
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An admin-defined external (provider) network.
pub struct ExternalNetwork;
impl Kind for ExternalNetwork {
    kind_consts!("ExternalNetwork", "external-networks", "extnet", Global, admin_write: true);
    type Spec = ExternalNetworkSpec;
    type Status = ExternalNetworkStatus;
    fn validate(spec: &ExternalNetworkSpec) -> Result<(), ApiError> {
        let c = parse_cidr("spec.cidr", &spec.cidr)?;
        let gw = match &spec.gateway {
            Some(g) => Some(parse_ip("spec.gateway", g)?),
            None => None,
        };
        yunhan_types::ipam::Ipam::new(c, gw)
            .map_err(|e| ApiError::invalid_field("spec.cidr", e.to_string()))?;
        validate_pool(spec, c)?;
        validate_legs(spec)
    }
}

fn validate_pool(spec: &ExternalNetworkSpec, cidr: yunhan_types::Ipv4Cidr) -> Result<(), ApiError> {
    let Some(p) = &spec.pool else {
        return Ok(());
    };
    let bad = |why: String| Err(ApiError::invalid_field("spec.pool", why));
    let Some((a, b)) = p.split_once('-') else {
        return bad(format!(
            "{p:?} is not FIRST-LAST, e.g. 203.0.113.10-203.0.113.99"
        ));
    };
    let (first, last) = (
        parse_ip("spec.pool", a.trim())?,
        parse_ip("spec.pool", b.trim())?,
    );
    let hosts = u32::from(cidr.network())..u32::from(cidr.broadcast());
    let inside = |ip: std::net::Ipv4Addr| hosts.contains(&u32::from(ip)) && ip != cidr.network();
    if !inside(first) || !inside(last) {
        return bad(format!("{p} is not made of host addresses of {cidr}"));
    }
    if first > last {
        return bad(format!("{p}: the first address comes after the last"));
    }
    Ok(())
}

fn validate_legs(spec: &ExternalNetworkSpec) -> Result<(), ApiError> {
    if spec.host_gateway && (spec.device.is_some() || !spec.legs.is_empty()) {
        return Err(ApiError::invalid_field(
            "spec.host_gateway",
            "a network on the hosts themselves uses a bridge of Yunhan's: give either host_gateway or device/legs",
        ));
    }
    if !spec.host_gateway && spec.device.is_none() && spec.legs.is_empty() {
        return Err(ApiError::invalid_field(
            "spec.device",
            "say how hosts reach the network: a device on every host (--device eth1), per-host devices (--leg HOST=DEVICE), or --host-gateway for a network on the hosts themselves",
        ));
    }
    if spec.legs.len() > 1000 {
        return Err(ApiError::invalid_field("spec.legs", "at most 1000 entries"));
    }
    if let Some(d) = &spec.device {
        validate_device("spec.device", d)?;
    }
    for (host, dev) in &spec.legs {
        validate_name("spec.legs", host)?;
        validate_device(&format!("spec.legs.{host}"), dev)?;
    }
    Ok(())
}

/// A Linux interface name: 1–15 characters, no `/`, whitespace or `:`.
fn validate_device(field: &str, d: &str) -> Result<(), ApiError> {
    let ok = !d.is_empty()
        && d.len() <= 15
        && d != "."
        && d != ".."
        && d.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{d:?} is not a network device name (1–15 characters, no '/', ':' or spaces)"),
        ))
    }
}

impl ExternalNetworkSpec {
    /// The range handed out as elastic IPs, when the spec restricts it (and it is valid).
    pub fn pool_range(&self) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
        let (a, b) = self.pool.as_deref()?.split_once('-')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    }

    /// Whether `host` (its id and name) has a leg on the network: the network lives on
    /// the hosts themselves, or the host reports the device the spec names for it.
    pub fn has_leg(&self, host_id: &str, host_name: &str, reported: &BTreeSet<String>) -> bool {
        self.host_gateway
            || (self.device_on(host_id, host_name)).is_some_and(|d| reported.contains(d))
    }

    /// The device `host` (its id or name) reaches the network through, by the spec.
    pub fn device_on(&self, host_id: &str, host_name: &str) -> Option<&str> {
        self.legs
            .get(host_id)
            .or_else(|| self.legs.get(host_name))
            .or(self.device.as_ref())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(device: Option<&str>, host_gateway: bool) -> ExternalNetworkSpec {
        ExternalNetworkSpec {
            cidr: "203.0.113.0/24".into(),
            device: device.map(Into::into),
            host_gateway,
            ..Default::default()
        }
    }

    #[test]
    fn a_host_has_a_leg_when_it_reports_the_device_named_for_it() {
        let reported: BTreeSet<String> = ["eth1".to_string()].into();
        assert!(spec(Some("eth1"), false).has_leg("hst-1", "node-1", &reported));
        assert!(!spec(Some("eth2"), false).has_leg("hst-1", "node-1", &reported));
        assert!(spec(None, true).has_leg("hst-1", "node-1", &BTreeSet::new()));
        let mut per_host = spec(None, false);
        per_host.legs = [("node-2".to_string(), "eth1".to_string())].into();
        assert!(per_host.has_leg("hst-2", "node-2", &reported));
        assert!(
            !per_host.has_leg("hst-1", "node-1", &reported),
            "no leg named for it"
        );
    }

    #[test]
    fn a_network_says_how_hosts_reach_it_exactly_one_way() {
        assert!(ExternalNetwork::validate(&spec(Some("eth1"), false)).is_ok());
        assert!(ExternalNetwork::validate(&spec(None, true)).is_ok());
        for bad in [spec(None, false), spec(Some("eth1"), true)] {
            assert_eq!(
                ExternalNetwork::validate(&bad).unwrap_err().code,
                crate::ErrorCode::InvalidField
            );
        }
        for dev in ["", "a/b", "sixteen-chars-xx", "e th", "eth0:1"] {
            assert!(
                ExternalNetwork::validate(&spec(Some(dev), false)).is_err(),
                "{dev}"
            );
        }
    }

    #[test]
    fn a_pool_is_a_range_of_host_addresses_inside_the_network() {
        let mut s = spec(Some("eth1"), false);
        s.pool = Some("203.0.113.10-203.0.113.20".into());
        assert!(ExternalNetwork::validate(&s).is_ok());
        assert_eq!(
            s.pool_range(),
            Some((
                "203.0.113.10".parse().unwrap(),
                "203.0.113.20".parse().unwrap()
            ))
        );
        for bad in [
            "203.0.113.20-203.0.113.10",
            "203.0.113.0-203.0.113.5",
            "203.0.113.250-203.0.113.255",
            "198.51.100.1-198.51.100.2",
            "203.0.113.10",
            "a-b",
        ] {
            s.pool = Some(bad.into());
            assert!(ExternalNetwork::validate(&s).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_host_legs_win_over_the_common_device() {
        let mut s = spec(Some("eth1"), false);
        s.legs.insert("node2".into(), "bond0".into());
        assert_eq!(s.device_on("hst-1", "node1"), Some("eth1"));
        assert_eq!(s.device_on("hst-2", "node2"), Some("bond0"));
        s.device = None;
        assert_eq!(s.device_on("hst-1", "node1"), None);
    }
}
