//! The pure Vortex side of a load balancer: which listeners Vortex serves ([`serves`]),
//! its configuration ([`render`]), what its status file says of them
//! ([`listener_status`]) and the last words of its log ([`last_words`]). No I/O.
//!
//! Vortex (`crates/vortex`, `yunhan vortex --mode nat`) balances layer-4 listeners in the
//! kernel (tc BPF on the namespace's `eth0`): a new connection goes to a member chosen by
//! weighted Maglev consistent hashing (of its 5-tuple, or of the client's address alone
//! for the `source_ip` algorithm or persistence) and is DNATed to the member's address
//! and port. It cannot count connections per member nor match requests, so HAProxy keeps
//! whatever needs that (least connections, a connection limit, HTTP). A listener is a
//! VIP named after it; a member is a backend named by its address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use yunhan_model::{
    HealthKind, HealthMonitor, LbAlgorithm, LbMember, LbProtocol, Listener, ListenerStatus,
    LoadBalancerSpec, MemberHealth, MemberStatus, Persistence,
};

use super::haproxy::{expected_codes, uri};
use yunhan_types::StatusCodes;

/// What the agent calls Vortex in a listener's status (`vortex-<attach>`, e.g. `vortex-tc`).
pub const ENGINE: &str = "vortex";
/// Vortex's Maglev table size: prime, at least 100 × the most members a listener has.
const TABLE_SIZE: u32 = 65537;
/// How much of its log a failure message quotes.
const MAX_WORDS: usize = 300;

/// Whether Vortex serves listener `l` (else HAProxy does): TCP, balanced by round robin or
/// source (Maglev), no connection limit and no timeouts (a proxy's features: Vortex passes
/// packets through), persistence none or by source, and members with
/// distinct IPv4 addresses (Vortex names a backend by its address). A member's address
/// that is not IPv4 leaves the listener to HAProxy, which refuses it in its own words.
pub fn serves(l: &Listener) -> bool {
    matches!(l.protocol, LbProtocol::Tcp | LbProtocol::Udp)
        && matches!(l.algorithm, LbAlgorithm::RoundRobin | LbAlgorithm::SourceIp)
        && l.connection_limit == 0
        && l.timeouts().next().is_none()
        && matches!(l.persistence, Persistence::None | Persistence::SourceIp)
        && l.rules.is_empty()
        && distinct_ipv4(&l.members)
}

fn distinct_ipv4(members: &[LbMember]) -> bool {
    let mut seen = BTreeSet::new();
    (members.iter())
        .filter(|m| !m.address.is_empty())
        .all(|m| m.address.parse::<Ipv4Addr>().is_ok_and(|a| seen.insert(a)))
}

/// Vortex's configuration file (`crates/vortex/src/config.rs`).
#[derive(Serialize)]
struct Config<'a> {
    table_size: u32,
    vip: Vec<Vip<'a>>,
}

#[derive(Serialize)]
struct Vip<'a> {
    name: &'a str,
    address: &'a str,
    port: u16,
    protocol: &'static str,
    hash: &'static str,
    health: Health,
    backend: Vec<Backend>,
}

#[derive(Serialize)]
struct Health {
    kind: &'static str,
    path: String,
    expect: StatusCodes,
    interval_ms: u64,
    timeout_ms: u64,
    rise: u32,
    fall: u32,
}

#[derive(Serialize)]
struct Backend {
    address: Ipv4Addr,
    port: u16,
    weight: u16,
}

/// The configuration serving the listeners of `spec` that Vortex serves on `address` (the
/// load balancer's, checked by [`super::haproxy::render`]); None when there is none.
/// Members without an address yet are left out.
pub fn render(spec: &LoadBalancerSpec, address: &str) -> Option<String> {
    let vip: Vec<Vip> = (spec.listeners.iter())
        .filter(|l| serves(l))
        .map(|l| Vip {
            name: &l.name,
            address,
            port: l.port,
            protocol: match l.protocol {
                LbProtocol::Udp => "udp",
                _ => "tcp",
            },
            hash: hash(l),
            health: health(l.health.as_ref()),
            backend: (l.members.iter())
                .filter_map(|m| {
                    Some(Backend {
                        address: m.address.parse().ok()?,
                        port: m.port,
                        weight: m.weight,
                    })
                })
                .collect(),
        })
        .collect();
    if vip.is_empty() {
        return None;
    }
    let config = Config {
        table_size: TABLE_SIZE,
        vip,
    };
    // Strings, numbers and addresses only: always representable.
    toml::to_string(&config).ok()
}

/// `source` (the client's address alone) keeps a client on its member.
fn hash(l: &Listener) -> &'static str {
    if l.algorithm == LbAlgorithm::SourceIp || l.persistence == Persistence::SourceIp {
        return "source";
    }
    "flow"
}

/// The monitor in Vortex's terms (none: `kind = "none"`, every member up); the HTTP path
/// and the expected codes are sent as HAProxy sends them.
fn health(h: Option<&HealthMonitor>) -> Health {
    let (kind, h) = match h {
        None => ("none", &HealthMonitor::default()),
        Some(h) => match h.kind {
            HealthKind::Tcp => ("tcp", h),
            HealthKind::Http => ("http", h),
            HealthKind::Https => ("https", h),
            HealthKind::UdpConnect => ("udp", h),
        },
    };
    Health {
        kind,
        path: uri(&h.path),
        expect: expected_codes(h),
        interval_ms: u64::from(h.interval_secs) * 1000,
        timeout_ms: u64::from(h.timeout_secs) * 1000,
        rise: h.rise,
        fall: h.fall,
    }
}

/// Vortex's status file (what is read of it).
#[derive(Deserialize)]
struct Status {
    /// How its program is attached (`tc`).
    #[serde(default)]
    attach: String,
    #[serde(default)]
    vips: Vec<VipStatus>,
}

#[derive(Deserialize)]
struct VipStatus {
    name: String,
    /// New connections balanced.
    #[serde(default)]
    flows: u64,
    /// Bytes from clients.
    #[serde(default)]
    bytes: u64,
    /// Bytes of the members' answers, translated back to clients.
    #[serde(default)]
    reply_bytes: u64,
    #[serde(default)]
    backends: Vec<BackendStatus>,
}

#[derive(Deserialize)]
struct BackendStatus {
    address: String,
    #[serde(default)]
    port: Option<u16>,
    /// As Vortex applies it (0: drained).
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    healthy: bool,
}

fn one() -> u32 {
    1
}

/// Each listener of `spec` that Vortex serves, in order, as its status file (`status_json`)
/// reports it: connections are the flows it balanced, bytes in those from clients, bytes
/// out the members' answers it translated back.
pub fn listener_status(
    spec: &LoadBalancerSpec,
    status_json: &str,
) -> Result<Vec<ListenerStatus>, serde_json::Error> {
    let st: Status = serde_json::from_str(status_json)?;
    let engine = match st.attach.as_str() {
        "" => ENGINE.to_string(),
        a => format!("{ENGINE}-{a}"),
    };
    Ok((spec.listeners.iter())
        .filter(|l| serves(l))
        .map(|l| {
            let vip = st.vips.iter().find(|v| v.name == l.name);
            ListenerStatus {
                name: l.name.clone(),
                engine: engine.clone(),
                connections: vip.map_or(0, |v| v.flows),
                bytes_in: vip.map_or(0, |v| v.bytes),
                bytes_out: vip.map_or(0, |v| v.reply_bytes),
                members: (l.members.iter())
                    .map(|m| MemberStatus {
                        rule: String::new(),
                        address: m.address.clone(),
                        port: m.port,
                        health: member_health(m, vip),
                    })
                    .collect(),
            }
        })
        .collect())
}

/// As Vortex applies it: drained (weight 0) whatever its checks say, else up or down;
/// unknown until Vortex has it (at its current port). A drain shows once Vortex stopped
/// giving the member new flows, not when the document asked for it.
fn member_health(m: &LbMember, vip: Option<&VipStatus>) -> MemberHealth {
    let found = (vip.iter().flat_map(|v| &v.backends))
        .find(|b| b.address == m.address && b.port.is_none_or(|p| p == m.port));
    match found {
        None => MemberHealth::Unknown,
        Some(b) if b.weight == 0 => MemberHealth::Drained,
        Some(b) if b.healthy => MemberHealth::Up,
        Some(_) => MemberHealth::Down,
    }
}

/// The last non-empty lines of Vortex's `log` (without terminal colours), joined by `; `,
/// at most [`MAX_WORDS`] characters (the last line alone is cut to that).
pub fn last_words(log: &str) -> String {
    let plain = strip_ansi(log);
    let mut words: Vec<&str> = Vec::new();
    let mut len = 0;
    for line in plain.lines().rev().map(str::trim).filter(|l| !l.is_empty()) {
        len += line.chars().count() + if words.is_empty() { 0 } else { 2 };
        if len > MAX_WORDS {
            if words.is_empty() {
                return line.chars().take(MAX_WORDS).collect::<String>() + "…";
            }
            break;
        }
        words.push(line);
    }
    words.reverse();
    words.join("; ")
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_balancer::haproxy::tests::member;

    fn tcp(name: &str, port: u16, members: Vec<LbMember>) -> Listener {
        Listener {
            name: name.into(),
            protocol: LbProtocol::Tcp,
            port,
            members,
            ..Default::default()
        }
    }

    /// `web` (HTTP: HAProxy's), `tcp` (round robin, an HTTP monitor, a drained member,
    /// one without an address yet), `db` (source, no monitor), `sticky` (round robin
    /// with source persistence, a TCP monitor), `least` (least connections: HAProxy's).
    fn spec() -> LoadBalancerSpec {
        let mut web = tcp("web", 80, vec![member("10.0.1.11", 8080, 1)]);
        web.protocol = LbProtocol::Http;
        let mut t = tcp(
            "tcp",
            8080,
            vec![
                member("10.0.1.5", 80, 1),
                member("10.0.1.6", 81, 0),
                member("", 80, 1),
                member("10.0.1.7", 80, 3),
            ],
        );
        t.health = Some(HealthMonitor {
            kind: HealthKind::Http,
            path: "/healthz?deep=1#x \"q\"".into(),
            expected_codes: "200,204".into(),
            interval_secs: 3,
            timeout_secs: 2,
            rise: 2,
            fall: 3,
        });
        let mut db = tcp("db", 5432, vec![member("10.0.1.21", 5432, 1)]);
        db.algorithm = LbAlgorithm::SourceIp;
        db.health = Some(HealthMonitor {
            kind: HealthKind::Https,
            ..Default::default()
        });
        let mut sticky = tcp("sticky", 9000, vec![member("10.0.1.31", 9000, 2)]);
        sticky.persistence = Persistence::SourceIp;
        sticky.health = Some(HealthMonitor::default());
        let mut least = tcp("least", 9001, vec![member("10.0.1.41", 9000, 1)]);
        least.algorithm = LbAlgorithm::LeastConnections;
        LoadBalancerSpec {
            subnet: "sn-1".into(),
            external: false,
            replicas: None,
            listeners: vec![web, t, db, sticky, least],
        }
    }

    #[test]
    fn serves_plain_layer_4_listeners() {
        let s = spec();
        let served: Vec<_> = (s.listeners.iter())
            .filter(|l| serves(l))
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(served, ["tcp", "db", "sticky"]);
        let with = |f: &dyn Fn(&mut Listener)| {
            let mut l = s.listeners[1].clone();
            f(&mut l);
            serves(&l)
        };
        assert!(with(&|_| {}));
        assert!(!with(&|l| l.connection_limit = 100));
        assert!(!with(&|l| l.protocol = LbProtocol::Https));
        assert!(with(&|l| l.protocol = LbProtocol::Udp));
        assert!(!with(&|l| l.persistence = Persistence::HttpCookie));
        assert!(!with(&|l| l.algorithm = LbAlgorithm::LeastConnections));
        // Two members at one address (other ports), or one Vortex could not name.
        assert!(!with(&|l| l.members[1].address = "10.0.1.5".into()));
        assert!(!with(&|l| l.members[1].address = "10.0.1.6\nx".into()));
        assert!(with(&|l| l.members[0].address.clear()));
        assert!(with(&|l| l.members.clear()));
    }

    #[test]
    fn renders_the_layer_4_listeners() {
        insta::assert_snapshot!(render(&spec(), "10.0.1.2").unwrap());
    }

    #[test]
    fn renders_valid_toml() {
        let text = render(&spec(), "10.0.1.2").unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let vips = v["vip"].as_array().unwrap();
        assert_eq!(vips.len(), 3);
        assert_eq!(
            vips[0]["health"]["path"].as_str(),
            Some("/healthz?deep=1%23x%20%22q%22")
        );
        let backends = vips[0]["backend"].as_array().unwrap();
        let ports: Vec<_> = backends.iter().map(|b| b["port"].as_integer()).collect();
        assert_eq!(ports, [Some(80), Some(81), Some(80)]);
        assert_eq!(vips[0]["health"]["expect"].as_str(), Some("200,204"));
        assert_eq!(vips[1]["health"]["kind"].as_str(), Some("https"));
        assert_eq!(
            (vips[1]["hash"].as_str(), vips[2]["hash"].as_str()),
            (Some("source"), Some("source"))
        );
    }

    #[test]
    fn renders_nothing_without_layer_4_listeners() {
        let mut s = spec();
        s.listeners.retain(|l| !serves(l));
        assert_eq!(render(&s, "10.0.1.2"), None);
        assert_eq!(listener_status(&s, "{}").unwrap(), []);
    }

    const STATUS: &str = r#"{"config_revision": 3, "attach": "tc",
 "vips": [{"name": "tcp", "address": "10.0.1.2", "port": 8080, "packets": 10, "bytes": 900, "reply_packets": 8, "reply_bytes": 4100, "flows": 2,
           "backends": [{"address": "10.0.1.5", "port": 80, "id": 0, "weight": 1, "healthy": true, "mac": null, "packets": 10},
                        {"address": "10.0.1.6", "port": 81, "id": 1, "weight": 0, "healthy": true, "mac": null, "packets": 0},
                        {"address": "10.0.1.7", "port": 80, "id": 2, "weight": 3, "healthy": false, "mac": null, "packets": 0}]},
          {"name": "sticky", "address": "10.0.1.2", "port": 9000, "packets": 0, "bytes": 0, "flows": 0,
           "backends": [{"address": "10.0.1.31", "port": 8999, "id": 3, "weight": 2, "healthy": true, "mac": null, "packets": 0}]}],
 "counters": {"pass": 1}, "conntrack_entries": 2}"#;

    #[test]
    fn listeners_from_the_status_file() {
        let st = listener_status(&spec(), STATUS).unwrap();
        let names: Vec<_> = st.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["tcp", "db", "sticky"]);
        assert!(st.iter().all(|l| l.engine == "vortex-tc"));
        let t = &st[0];
        assert_eq!((t.connections, t.bytes_in, t.bytes_out), (2, 900, 4100));
        let health = |l: usize| st[l].members.iter().map(|m| m.health).collect::<Vec<_>>();
        use MemberHealth::*;
        assert_eq!(health(0), [Up, Drained, Unknown, Down]);
        assert_eq!(
            (t.members[3].address.as_str(), t.members[3].port),
            ("10.0.1.7", 80)
        );
        assert!(t.members.iter().all(|m| m.rule.is_empty()));
        // Not in the status yet; in it at a port it had before the change.
        assert_eq!((health(1), st[1].connections), (vec![Unknown], 0));
        assert_eq!(health(2), [Unknown]);
    }

    #[test]
    fn reads_what_it_understands_of_the_status() {
        let st = listener_status(
            &spec(),
            r#"{"vips": [{"name": "db", "flows": 4,
            "backends": [{"address": "10.0.1.21", "healthy": true}]}]}"#,
        )
        .unwrap();
        assert_eq!((st[1].engine.as_str(), st[1].connections), ("vortex", 4));
        assert_eq!(st[1].members[0].health, MemberHealth::Up);
        assert!(listener_status(&spec(), "{\"vips\": [").is_err());
        assert!(listener_status(&spec(), "").is_err());
    }

    #[test]
    fn last_words_of_the_log() {
        let log =
            "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m vortex starting\n\n\
                   error: cannot attach to eth0: no such device\n  \n";
        assert_eq!(
            last_words(log),
            "2026-01-01T00:00:00Z  INFO vortex starting; error: cannot attach to eth0: no such device"
        );
        let long = format!("{}\nlast\n", "x".repeat(400));
        assert_eq!(last_words(&long), "last");
        let words = last_words(&"y".repeat(400));
        assert_eq!(words.chars().count(), MAX_WORDS + 1);
        assert!(words.ends_with("y…"));
        let many = (0..100).map(|i| format!("line {i}\n")).collect::<String>();
        let words = last_words(&many);
        assert!(
            words.ends_with("line 98; line 99") && words.len() <= MAX_WORDS,
            "{words}"
        );
        assert_eq!(last_words(""), "");
    }
}
