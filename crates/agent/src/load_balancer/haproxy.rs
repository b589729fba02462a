//! The pure HAProxy side of a load balancer: its configuration ([`render`]) and hash
//! ([`config_hash`]), the `show stat` CSV of its stats socket ([`parse_stat`]) and what it
//! says about each listener ([`listener_status`]), and the error lines of HAProxy's own
//! output ([`alerts`]). No I/O. HAProxy serves every listener that Vortex does not
//! ([`vortex::serves`]).
//!
//! Names: listener `<l>` is `frontend ft_<l>` and `backend bk_<l>`, its rule `<r>` is
//! `backend bk_<l>.<r>` (names have no '.': they cannot collide); member `j` (its index in
//! its list) is `server m<j>`, so a member keeps its name while others change.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use sha2::{Digest, Sha256};
use yunhan_model::{
    HealthKind, HealthMonitor, L7Action, L7Rule, LbAlgorithm, LbMember, LbProtocol, Listener,
    ListenerStatus, LoadBalancerSpec, MemberHealth, MemberStatus, Persistence,
};

use super::vortex;
use yunhan_types::StatusCodes;

/// What the agent calls HAProxy in a listener's status.
pub const ENGINE: &str = "haproxy";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("listener {listener}: {protocol} listeners are not supported on this host")]
    Protocol { listener: String, protocol: String },
    #[error("{what} {value:?} is not an IPv4 address")]
    Address { what: String, value: String },
}

/// The configuration serving `spec`'s listeners that Vortex does not serve on `address`,
/// with its stats socket at `socket`. Members without an address yet are left out.
pub fn render(
    spec: &LoadBalancerSpec,
    address: &str,
    socket: &Path,
) -> Result<String, RenderError> {
    let address = ipv4("the load balancer's address", address)?;
    let mut c = String::new();
    let _ = write!(
        c,
        "global\n    stats socket {} mode 600 level admin\n\n\
         defaults\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
        quote(&socket.to_string_lossy())
    );
    for l in haproxys(spec) {
        let mode = mode(l)?;
        c.push('\n');
        c.push_str(&frontend(l, mode, address, socket));
        for (rule, members) in l.pools() {
            c.push('\n');
            c.push_str(&backend(&backend_name(&l.name, rule), l, members, mode)?);
        }
    }
    Ok(c)
}

/// The listeners HAProxy serves.
fn haproxys(spec: &LoadBalancerSpec) -> impl Iterator<Item = &Listener> {
    spec.listeners.iter().filter(|l| !vortex::serves(l))
}

fn ipv4(what: &str, s: &str) -> Result<Ipv4Addr, RenderError> {
    s.parse().map_err(|_| RenderError::Address {
        what: what.to_string(),
        value: s.to_string(),
    })
}

fn mode(l: &Listener) -> Result<&'static str, RenderError> {
    match l.protocol {
        LbProtocol::Tcp => Ok("tcp"),
        LbProtocol::Http | LbProtocol::Https => Ok("http"),
        other => Err(RenderError::Protocol {
            listener: l.name.clone(),
            protocol: format!("{other:?}").to_lowercase(),
        }),
    }
}

/// Where an HTTPS listener's certificate and key (one PEM file) go: next to the stats
/// socket, named after the listener.
pub fn pem_path(socket: &Path, listener: &str) -> std::path::PathBuf {
    socket.with_file_name(format!("{listener}.pem"))
}

fn frontend(l: &Listener, mode: &str, address: Ipv4Addr, socket: &Path) -> String {
    let tls = match l.protocol {
        LbProtocol::Https => format!(
            " ssl crt {}",
            quote(&pem_path(socket, &l.name).to_string_lossy())
        ),
        _ => String::new(),
    };
    let mut c = format!(
        "frontend ft_{}\n    mode {mode}\n    bind {address}:{}{tls}\n",
        l.name, l.port
    );
    if l.connection_limit > 0 {
        let _ = writeln!(c, "    maxconn {}", l.connection_limit);
    }
    if let Some(ms) = l.timeout_client_data_ms {
        let _ = writeln!(c, "    timeout client {ms}ms");
    }
    c.push_str(&rules(&l.name, &l.rules));
    let _ = writeln!(c, "    default_backend bk_{}", l.name);
    c
}

/// The rules, first match wins: each rule whose conditions hold marks the request with
/// its index (`txn.yh_rule`) unless an earlier one did, and the mark picks the answer
/// (`http-request`, which HAProxy runs first) or the backend (`use_backend`).
fn rules(listener: &str, rules: &[L7Rule]) -> String {
    let mut c = String::new();
    for (k, r) in rules.iter().enumerate() {
        let conds = rule_conditions(&mut c, k, r);
        let _ = writeln!(
            c,
            "    http-request set-var(txn.yh_rule) int({k}) if {conds} !{{ var(txn.yh_rule) -m found }}"
        );
    }
    let marked = |k: usize| format!("{{ var(txn.yh_rule) -m int {k} }}");
    for (k, r) in rules.iter().enumerate() {
        let _ = match r.action {
            L7Action::Forward => continue,
            L7Action::Reject => {
                writeln!(c, "    http-request deny deny_status 403 if {}", marked(k))
            }
            L7Action::Redirect => writeln!(
                c,
                "    http-request redirect location {} code {} if {}",
                // A log-format string: '%' would start a fetch.
                (r.redirect_url.as_deref().unwrap_or("/")).replace('%', "%%"),
                r.redirect_code.unwrap_or(302),
                marked(k)
            ),
        };
    }
    for (k, r) in rules.iter().enumerate() {
        if r.action == L7Action::Forward {
            let bk = backend_name(listener, &r.name);
            let _ = writeln!(c, "    use_backend {bk} if {}", marked(k));
        }
    }
    c
}

/// The backend of listener `listener`'s rule `rule` (`""`: the listener's own members).
fn backend_name(listener: &str, rule: &str) -> String {
    match rule {
        "" => format!("bk_{listener}"),
        r => format!("bk_{listener}.{r}"),
    }
}

/// Writes rule `k`'s ACLs (`r<k>_host`, `r<k>_path`) to `c`; their names, as one
/// condition.
fn rule_conditions(c: &mut String, k: usize, r: &L7Rule) -> String {
    let mut conds = Vec::new();
    if !r.host.is_empty() {
        let host = r.host.to_ascii_lowercase();
        let _ = writeln!(
            c,
            "    acl r{k}_host req.hdr(host),field(1,:),lower -m str {host}"
        );
        conds.push(format!("r{k}_host"));
    }
    if !r.path_prefix.is_empty() {
        let _ = writeln!(c, "    acl r{k}_path path -m beg {}", quote(&r.path_prefix));
        conds.push(format!("r{k}_path"));
    }
    conds.join(" ")
}

fn backend(
    name: &str,
    l: &Listener,
    members: &[LbMember],
    mode: &str,
) -> Result<String, RenderError> {
    let balance = match l.algorithm {
        LbAlgorithm::RoundRobin => "roundrobin",
        LbAlgorithm::LeastConnections => "leastconn",
        LbAlgorithm::SourceIp => "source",
    };
    let mut c = format!("backend {name}\n    mode {mode}\n    balance {balance}\n");
    for (what, ms) in [
        ("connect", l.timeout_member_connect_ms),
        ("server", l.timeout_member_data_ms),
    ] {
        if let Some(ms) = ms {
            let _ = writeln!(c, "    timeout {what} {ms}ms");
        }
    }
    c.push_str(&persistence(l));
    if let Some(h) = &l.health {
        c.push_str(&health(h));
    }
    let cookie = l.persistence == Persistence::HttpCookie;
    for (j, m) in members.iter().enumerate() {
        if !m.address.is_empty() {
            c.push_str(&server(&l.name, j, m, l.health.as_ref(), cookie)?);
        }
    }
    Ok(c)
}

fn health(h: &HealthMonitor) -> String {
    let mut c = format!("    timeout check {}s\n", h.timeout_secs);
    if matches!(h.kind, HealthKind::Http | HealthKind::Https) {
        let _ = write!(
            c,
            "    option httpchk\n    http-check send meth GET uri {}\n    \
             http-check expect status {}\n",
            uri(&h.path),
            expected_codes(h)
        );
    }
    c
}

/// A monitor's expected codes in canonical form (digits, ',' and '-' only: nothing for
/// HAProxy's parser to misread); the document was checked on its way in.
pub fn expected_codes(h: &HealthMonitor) -> StatusCodes {
    h.expected_codes.parse().unwrap_or_default()
}

/// How the backend keeps a client on its member. An application's cookie is learned
/// from requests and answers alike (the value a member sets, or a client sends first).
fn persistence(l: &Listener) -> String {
    match (l.persistence, l.persistence_cookie.as_deref()) {
        (Persistence::SourceIp, _) => {
            "    stick-table type ip size 100k expire 30m\n    stick on src\n".into()
        }
        (Persistence::HttpCookie, _) => {
            "    cookie YUNHAN_LB insert indirect nocache httponly\n".into()
        }
        (Persistence::AppCookie, Some(name)) => format!(
            "    stick-table type string len 64 size 100k expire 30m\n    \
             stick on req.cook({name})\n    stick store-response res.cook({name})\n"
        ),
        _ => String::new(),
    }
}

/// Weight 0 takes no new connections and keeps the open ones: that is the drain.
fn server(
    listener: &str,
    j: usize,
    m: &LbMember,
    health: Option<&HealthMonitor>,
    cookie: bool,
) -> Result<String, RenderError> {
    let address = ipv4(
        &format!("listener {listener}: member {j}'s address"),
        &m.address,
    )?;
    let mut c = format!("    server m{j} {address}:{} weight {}", m.port, m.weight);
    if cookie {
        let _ = write!(c, " cookie m{j}");
    }
    if let Some(h) = health {
        // Once a check disagrees with the state, the next ones come 4× as often (at least
        // every 250 ms): a member is marked down or up well within fall (rise) × interval.
        let fast = (h.interval_secs * 250).max(250);
        let _ = write!(
            c,
            " check inter {}s fastinter {fast}ms fall {} rise {}",
            h.interval_secs, h.fall, h.rise
        );
        if h.kind == HealthKind::Https {
            c.push_str(" check-ssl verify none");
        }
    }
    c.push('\n');
    Ok(c)
}

/// A health check path as one configuration word: bytes HAProxy's parser or HTTP would read
/// otherwise (`#`, quotes, `\`, `$`, spaces, non-ASCII) are percent-encoded.
pub fn uri(path: &str) -> String {
    let mut u = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!&()*+,;=:@%?".contains(&b) {
            u.push(b as char);
        } else {
            let _ = write!(u, "%{b:02X}");
        }
    }
    u
}

/// A path as one configuration word (single quotes: no escapes, no variables inside).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The short hash a load balancer's status reports as `served`.
pub fn config_hash(cfg: &str) -> String {
    hex::encode(Sha256::digest(cfg.as_bytes()))[..12].to_string()
}

/// One row of `show stat`: a frontend, backend or server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatRow {
    pub proxy: String,
    /// `FRONTEND`, `BACKEND` or the server's name.
    pub server: String,
    /// `OPEN`, `UP`, `UP 1/2` (going down), `DOWN`, `DOWN 1/2`, `no check`, `MAINT`, …
    pub status: String,
    /// `INI` until the first check, then `L4OK`, `L4CON`, `L7OK`, `L7STS`, …
    pub check_status: String,
    pub sessions: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatError {
    #[error("`show stat` answered without its CSV header: {0:?}")]
    NoHeader(String),
    #[error("`show stat` has no {0} column")]
    Column(&'static str),
}

const COLUMNS: [&str; 8] = [
    "pxname",
    "svname",
    "status",
    "check_status",
    "stot",
    "req_tot",
    "bin",
    "bout",
];

/// Parses the CSV `show stat` answers (`# pxname,svname,…` then one row per proxy and
/// server); columns are found by name in the header.
pub fn parse_stat(csv: &str) -> Result<Vec<StatRow>, StatError> {
    let mut lines = csv.lines();
    let first = lines.next().unwrap_or_default();
    let header = first
        .strip_prefix("# ")
        .ok_or_else(|| StatError::NoHeader(first.chars().take(80).collect()))?;
    let names = split_csv(header);
    let mut at = [0; COLUMNS.len()];
    for (i, c) in COLUMNS.iter().enumerate() {
        at[i] = (names.iter().position(|n| n == c)).ok_or(StatError::Column(c))?;
    }
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|l| row(l, &at))
        .collect())
}

fn row(line: &str, at: &[usize; COLUMNS.len()]) -> StatRow {
    let f = split_csv(line);
    let text = |i: usize| f.get(at[i]).cloned().unwrap_or_default();
    let num = |i: usize| text(i).parse().unwrap_or(0);
    StatRow {
        proxy: text(0),
        server: text(1),
        status: text(2),
        check_status: text(3),
        sessions: num(4),
        requests: num(5),
        bytes_in: num(6),
        bytes_out: num(7),
    }
}

/// Splits a CSV line; HAProxy quotes fields holding commas or quotes (`""` inside).
fn split_csv(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    fields.push(cur);
    fields
}

/// Each listener of `spec` that HAProxy serves, in order, as `show stat` reports it: a
/// layer-4 listener counts connections (`stot`), a layer-7 one requests (`req_tot`).
pub fn listener_status(spec: &LoadBalancerSpec, rows: &[StatRow]) -> Vec<ListenerStatus> {
    let find =
        |proxy: &str, server: &str| rows.iter().find(|r| r.proxy == proxy && r.server == server);
    haproxys(spec)
        .map(|l| {
            let ft = find(&format!("ft_{}", l.name), "FRONTEND");
            let members = (l.pools())
                .flat_map(|(rule, members)| {
                    let bk = backend_name(&l.name, rule);
                    (members.iter().enumerate()).map(move |(j, m)| MemberStatus {
                        rule: rule.to_string(),
                        address: m.address.clone(),
                        port: m.port,
                        health: member_health(m, find(&bk, &format!("m{j}"))),
                    })
                })
                .collect();
            let counted = |r: &StatRow| match l.protocol {
                LbProtocol::Http | LbProtocol::Https => r.requests,
                _ => r.sessions,
            };
            ListenerStatus {
                name: l.name.clone(),
                engine: ENGINE.to_string(),
                connections: ft.map(counted).unwrap_or(0),
                bytes_in: ft.map(|r| r.bytes_in).unwrap_or(0),
                bytes_out: ft.map(|r| r.bytes_out).unwrap_or(0),
                members,
            }
        })
        .collect()
}

/// Drained (weight 0) whatever its checks say; unknown before the first check.
fn member_health(m: &LbMember, row: Option<&StatRow>) -> MemberHealth {
    if m.weight == 0 {
        return MemberHealth::Drained;
    }
    let Some(r) = row.filter(|r| r.check_status != "INI") else {
        return MemberHealth::Unknown;
    };
    match r.status.split(' ').next().unwrap_or_default() {
        "UP" | "no" | "NOLB" | "DRAIN" => MemberHealth::Up,
        "DOWN" | "MAINT" => MemberHealth::Down,
        _ => MemberHealth::Unknown,
    }
}

/// How many of HAProxy's alerts a message quotes (the first error, and what it caused).
const MAX_ALERTS: usize = 3;

/// HAProxy's `[ALERT]` lines in `output` (of process `pid` only, when given: a running
/// master's workers log theirs to the same file), without their prefix, joined by `; `:
/// the first [`MAX_ALERTS`], then how many more.
pub fn alerts(output: &str, pid: Option<u32>) -> String {
    let tag = pid.map(|p| format!("({p})"));
    let lines: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("[ALERT]"))
        .map(str::trim_start)
        .filter(|l| tag.as_deref().is_none_or(|t| l.starts_with(t)))
        .map(|l| l.split_once(" : ").map_or(l, |(_, rest)| rest).trim())
        .map(|l| l.strip_prefix("config : ").unwrap_or(l))
        .collect();
    let mut text = lines[..lines.len().min(MAX_ALERTS)].join("; ");
    if lines.len() > MAX_ALERTS {
        text += &format!(" (and {} more)", lines.len() - MAX_ALERTS);
    }
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use yunhan_model::HealthMonitor;

    /// A member at `address:port` (the load balancer's tests' too).
    pub(in crate::load_balancer) fn member(address: &str, port: u16, weight: u16) -> LbMember {
        LbMember {
            address: address.into(),
            port,
            weight,
            ..Default::default()
        }
    }

    /// Two listeners: `web` (HTTP, least connections, limit 1000, client and member data
    /// timeouts, an HTTP health monitor,
    /// one member drained, one without an address yet) and `db` (TCP, source, limit 100 —
    /// which keeps it HAProxy's rather than Vortex's —, an HTTPS monitor: its member
    /// speaks TLS).
    pub(super) fn spec() -> LoadBalancerSpec {
        LoadBalancerSpec {
            subnet: "sn-1".into(),
            external: false,
            replicas: None,
            listeners: vec![
                Listener {
                    name: "web".into(),
                    protocol: LbProtocol::Http,
                    port: 80,
                    algorithm: LbAlgorithm::LeastConnections,
                    connection_limit: 1000,
                    timeout_client_data_ms: Some(30_000),
                    timeout_member_data_ms: Some(120_500),
                    members: vec![
                        member("10.0.1.11", 8080, 1),
                        member("10.0.1.12", 8080, 0),
                        member("", 8080, 1),
                        member("10.0.1.13", 8080, 3),
                    ],
                    health: Some(HealthMonitor {
                        kind: HealthKind::Http,
                        path: "/healthz?deep=1#x".into(),
                        expected_codes: "200, 301-302".into(),
                        interval_secs: 3,
                        timeout_secs: 2,
                        rise: 2,
                        fall: 3,
                    }),
                    ..Default::default()
                },
                Listener {
                    name: "db".into(),
                    protocol: LbProtocol::Tcp,
                    port: 5432,
                    algorithm: LbAlgorithm::SourceIp,
                    connection_limit: 100,
                    members: vec![member("10.0.1.21", 5432, 1)],
                    health: Some(HealthMonitor {
                        kind: HealthKind::Https,
                        expected_codes: "200,204".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        }
    }

    /// HTTPS terminates TLS with the listener's PEM file, next to the stats socket.
    #[test]
    fn an_https_listener_binds_with_its_pem() {
        let mut s = spec();
        s.listeners.truncate(1);
        s.listeners[0].protocol = LbProtocol::Https;
        s.listeners[0].port = 443;
        let sock = Path::new("/var/lib/yunhan/lb/lb-1/stats.sock");
        let cfg = render(&s, "10.0.1.5", sock).unwrap();
        let bind = "    bind 10.0.1.5:443 ssl crt '/var/lib/yunhan/lb/lb-1/web.pem'\n";
        assert!(cfg.contains(bind), "{cfg}");
        assert!(cfg.contains("frontend ft_web\n    mode http\n"), "{cfg}");
    }

    /// A round-robin TCP listener is Vortex's: no frontend, no backend, no status here.
    #[test]
    fn leaves_layer_4_listeners_to_vortex() {
        let mut s = spec();
        let mut raw = s.listeners[1].clone();
        (raw.name, raw.port, raw.connection_limit) = ("raw".into(), 9000, 0);
        raw.algorithm = LbAlgorithm::RoundRobin;
        s.listeners.insert(1, raw);
        assert!(vortex::serves(&s.listeners[1]) && !vortex::serves(&s.listeners[2]));
        let mut timed = s.listeners[1].clone();
        timed.timeout_member_connect_ms = Some(1_000);
        assert!(!vortex::serves(&timed), "a timeout is a proxy's");
        let cfg = render(&s, "10.0.1.5", Path::new("/s")).unwrap();
        assert!(!cfg.contains("_raw") && !cfg.contains(":9000"), "{cfg}");
        assert!(cfg.contains("frontend ft_db\n") && cfg.contains("backend bk_db\n"));
        let rows = parse_stat(STAT).unwrap();
        let names: Vec<_> = (listener_status(&s, &rows).into_iter())
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["web", "db"]);
        s.listeners.retain(|l| l.name == "raw");
        let cfg = render(&s, "10.0.1.5", Path::new("/s")).unwrap();
        assert!(
            !cfg.contains("frontend") && !cfg.contains("backend"),
            "{cfg}"
        );
    }

    #[test]
    fn renders_two_listeners() {
        let cfg = render(
            &spec(),
            "10.0.1.5",
            Path::new("/var/lib/yunhan/lb/lb-1/stats.sock"),
        );
        insta::assert_snapshot!(cfg.unwrap());
    }

    /// `web` with a cookie and four rules (host and path; path alone; a redirect; a
    /// reject), `db` stuck by source,
    /// `app` stuck by the application's JSESSIONID.
    fn spec_l7() -> LoadBalancerSpec {
        let mut s = spec();
        let web = &mut s.listeners[0];
        web.persistence = Persistence::HttpCookie;
        web.rules = vec![
            L7Rule {
                name: "api".into(),
                host: "API.example.com".into(),
                path_prefix: "/v1/".into(),
                members: vec![member("10.0.1.31", 9000, 1)],
                ..Default::default()
            },
            L7Rule {
                name: "img".into(),
                path_prefix: "/img#1".into(),
                ..Default::default()
            },
            L7Rule {
                name: "old".into(),
                path_prefix: "/old/".into(),
                action: L7Action::Redirect,
                redirect_url: Some("https://new.example.com/a%20b".into()),
                redirect_code: Some(301),
                ..Default::default()
            },
            L7Rule {
                name: "admin".into(),
                host: "admin.example.com".into(),
                action: L7Action::Reject,
                ..Default::default()
            },
        ];
        s.listeners[1].persistence = Persistence::SourceIp;
        let mut app = s.listeners[0].clone();
        (app.name, app.port, app.rules) = ("app".into(), 8080, Vec::new());
        app.persistence = Persistence::AppCookie;
        app.persistence_cookie = Some("JSESSIONID".into());
        s.listeners.push(app);
        s
    }

    #[test]
    fn renders_rules_and_persistence() {
        let cfg = render(&spec_l7(), "10.0.1.5", Path::new("/lb/stats.sock"));
        insta::assert_snapshot!(cfg.unwrap());
    }

    #[test]
    fn rule_members_report_under_their_rule() {
        let m0 = STAT.lines().find(|l| l.starts_with("bk_web,m0,")).unwrap();
        let stat = format!("{STAT}{}\n", m0.replacen("bk_web", "bk_web.api", 1));
        let st = listener_status(&spec_l7(), &parse_stat(&stat).unwrap());
        let rules: Vec<_> = (st[0].members.iter())
            .map(|m| (m.rule.as_str(), m.health))
            .collect();
        use MemberHealth::*;
        assert_eq!(
            rules,
            [
                ("", Up),
                ("", Drained),
                ("", Unknown),
                ("", Down),
                ("api", Up)
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let sock = Path::new("/s");
        let mut s = spec();
        assert!(matches!(
            render(&s, "10.0.1.5\n", sock),
            Err(RenderError::Address { .. })
        ));
        s.listeners[1].members[0].address = "10.0.1.21\nserver x".into();
        let e = render(&s, "10.0.1.5", sock).unwrap_err();
        assert!(
            e.to_string().contains("listener db: member 0's address"),
            "{e}"
        );
        s.listeners[1].protocol = LbProtocol::Udp;
        let e = render(&s, "10.0.1.5", sock).unwrap_err();
        assert_eq!(
            e.to_string(),
            "listener db: udp listeners are not supported on this host"
        );
    }

    #[test]
    fn paths_and_sockets_are_one_word() {
        assert_eq!(uri("/a b#c'\"\\$é"), "/a%20b%23c%27%22%5C%24%C3%A9");
        assert_eq!(uri("/ok/x?y=1&z=%20"), "/ok/x?y=1&z=%20");
        assert_eq!(quote("/d/it's"), r"'/d/it'\''s'");
        assert_eq!(config_hash("x").len(), 12);
        assert_ne!(config_hash("x"), config_hash("y"));
    }

    pub(super) const STAT: &str = "\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,last_chk
ft_web,FRONTEND,,,0,2,1000,17,4200,9100,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,0,12,0,0,0,0,,0,1,12,
bk_web,m0,0,0,0,1,,9,2000,4000,,0,,0,0,0,0,UP,1,1,0,0,0,30,0,,1,3,1,,9,,2,0,,1,L7OK,200,1,0,9,0,0,0,0,,,,9,\"HTTP status check returned code <3C>200<3E>, ok\"
bk_web,m1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,0,1,0,0,0,30,0,,1,3,2,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,
bk_web,m3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,3,1,0,3,1,30,30,,1,3,4,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,Connection refused
bk_web,BACKEND,0,0,0,1,100,9,2000,4000,0,0,,0,0,0,0,UP,1,1,0,,0,30,0,,1,3,0,,9,,1,0,,1,,,,0,9,0,0,0,0,,,,9,
ft_db,FRONTEND,,,0,1,9984,3,300,700,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,0,0,1,,,,,,,,,,,0,0,0,
bk_db,m0,0,0,0,1,,3,300,700,,0,,0,0,0,0,no check,1,1,0,,,30,,,1,5,1,,3,,2,0,,1,,,,,,,,,,,,,,0,

";

    #[test]
    fn reads_show_stat() {
        let rows = parse_stat(STAT).unwrap();
        assert_eq!(rows.len(), 7);
        let m0 = &rows[1];
        assert_eq!(
            (
                m0.server.as_str(),
                m0.status.as_str(),
                m0.check_status.as_str()
            ),
            ("m0", "UP", "L7OK")
        );
        assert_eq!((m0.sessions, m0.bytes_in, m0.bytes_out), (9, 2000, 4000));
        assert_eq!(rows[0].requests, 12);
        assert_eq!(
            split_csv(r#"a,"b,""c""",d"#),
            ["a", r#"b,"c""#, "d"].map(String::from)
        );
        assert_eq!(
            parse_stat("Unknown command\n"),
            Err(StatError::NoHeader("Unknown command".into()))
        );
        assert_eq!(
            parse_stat("# pxname,svname\n"),
            Err(StatError::Column("status"))
        );
    }

    #[test]
    fn listeners_from_stats() {
        let rows = parse_stat(STAT).unwrap();
        let st = listener_status(&spec(), &rows);
        let health = |l: usize| st[l].members.iter().map(|m| m.health).collect::<Vec<_>>();
        use MemberHealth::*;
        assert_eq!(health(0), [Up, Drained, Unknown, Down]);
        assert_eq!(health(1), [Up]);
        assert_eq!(
            (
                st[0].engine.as_str(),
                st[0].connections,
                st[0].bytes_in,
                st[0].bytes_out
            ),
            ("haproxy", 12, 4200, 9100)
        );
        assert_eq!((st[1].name.as_str(), st[1].connections), ("db", 3));
        assert_eq!(
            (st[1].members[0].address.as_str(), st[1].members[0].port),
            ("10.0.1.21", 5432)
        );
        let mut ini = rows.clone();
        ini[1].check_status = "INI".into();
        assert_eq!(listener_status(&spec(), &ini)[0].members[0].health, Unknown);
        assert!(listener_status(&spec(), &[])
            .iter()
            .all(|l| l.connections == 0));
    }

    #[test]
    fn alerts_are_haproxys_words() {
        let out = "\
[NOTICE]   (10) : haproxy version is 2.6.12
[ALERT]    (10) : Binding [/d/haproxy.cfg:9] for frontend ft_a: cannot bind socket (Address in use) for [10.0.0.5:80]
[ALERT]    (11) : backend 'bk_a' has no server available!
[ALERT]    (10) : [haproxy.main()] Some protocols failed to start their listeners! Exiting.
";
        assert_eq!(
            alerts(out, Some(10)),
            "Binding [/d/haproxy.cfg:9] for frontend ft_a: cannot bind socket (Address in use) \
             for [10.0.0.5:80]; [haproxy.main()] Some protocols failed to start their listeners! Exiting."
        );
        assert_eq!(alerts(out, None).matches("; ").count(), 2);
        assert_eq!(alerts("", None), "");
        let parse = "[ALERT]    (7) : config : parsing [c:1] : unknown keyword 'x'.\n".repeat(5);
        assert_eq!(
            alerts(&parse, None),
            ["parsing [c:1] : unknown keyword 'x'."; 3].join("; ") + " (and 2 more)"
        );
    }

    /// What HAProxy 2.6 itself says of the rendered configuration (when it is installed).
    #[test]
    fn haproxy_accepts_the_rendering() {
        let bin = crate::load_balancer::process::HAPROXY;
        if !Path::new(bin).exists() {
            eprintln!("skipped: no {bin}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for spec in [spec(), spec_l7()] {
            let cfg = render(&spec, "10.0.1.5", &dir.path().join("stats.sock")).unwrap();
            let path = dir.path().join("haproxy.cfg");
            std::fs::write(&path, cfg).unwrap();
            let out = std::process::Command::new(bin)
                .arg("-c")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(!text.contains("[WARNING]"), "{text}");
        }
    }
}
