//! `yunhan lb …` (`load-balancer`): load balancers with their listeners, members and
//! health checks (issue #16). They are one document: every change is a read-modify-write
//! of its spec, printed as `lb show` prints it.

use std::collections::HashMap;
use std::fmt;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Subcommand};
use yunhan_model::network::NetworkInterface;
use yunhan_model::{
    Doc, ErrorCode, HealthKind, HealthMonitor, Instance, Kind, LbAlgorithm, LbMember, LbPhase,
    LbProtocol, LbReplica, Listener, LoadBalancer, LoadBalancerSpec, Persistence,
};

use crate::client::{Answer, ClientError};
use crate::ctx::{Common, Ctx};
use crate::kind::{Obj, Shown};
use crate::output::{cell, col, join, print_all, table, with_phase, Column, Format};
use crate::wait::{parse_duration, wait_for, Verdict, WaitArgs};

mod rule;
pub use rule::RuleCommand;

/// Load balancers: listeners on a virtual address spreading connections over VMs
///
/// A load balancer has an address in a subnet (and, with --external, an elastic IP in
/// front of it). Each listener (a protocol and a port on that address) spreads new
/// connections over its members, VMs of the VPC, and with a health check only over the
/// members that pass it.
///
/// Example:
///   yunhan lb create lb1 --subnet s1 --external --wait
///   yunhan lb listener add lb1 --name http --protocol http --port 80
///   yunhan lb member add lb1 --listener http --vm w1 --port 80
///   yunhan lb member add lb1 --listener http --vm w2 --port 80
///   yunhan lb health set lb1 --listener http --type http --path / --interval 2s
///   yunhan lb show lb1                                  # listeners, members, health
///   yunhan lb member drain lb1 --listener http --vm w2   # no new connections to w2
///   yunhan lb member remove lb1 --listener http --vm w2
///   yunhan lb create lb2 --subnet s1 --replicas 2 --wait  # internal, on two hosts at once
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum LbCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(LbCreate),
    /// A load balancer's listeners' connections (requests, for HTTP) and bytes per
    /// second over a window, as small charts
    Metrics(crate::commands::metrics::MetricsArgs),
    /// Listeners: a protocol and a port on the load balancer's address
    ///
    /// Example:
    ///   yunhan lb listener add lb1 --name http --protocol http --port 80
    ///   yunhan lb listener add lb1 --name db --protocol tcp --port 5432 --algorithm least-connections
    ///   yunhan lb listener add lb1 --name tls --protocol https --port 443 --certificate crt.pem --key key.pem
    ///   yunhan lb listener list lb1
    ///   yunhan lb listener remove lb1 --name db
    #[command(subcommand, verbatim_doc_comment)]
    Listener(ListenerCommand),
    /// Members: where a listener sends connections
    ///
    /// A member is a VM (its NIC in the load balancer's VPC), a NIC of the VPC or a plain
    /// address, with a port. VMs and NICs are stored by id; give their names or ids.
    /// 'yunhan lb show' prints each member's health.
    ///
    /// Example:
    ///   yunhan lb member add lb1 --listener http --vm w1 --port 80
    ///   yunhan lb member add lb1 --listener http --address 10.0.1.20 --port 8080 --weight 2
    ///   yunhan lb member drain lb1 --listener http --vm w1    # open connections stay
    ///   yunhan lb member remove lb1 --listener http --vm w1
    #[command(subcommand, verbatim_doc_comment)]
    Member(MemberCommand),
    /// Health checks: only members that pass them get new connections
    ///
    /// A member is down after --fall failed checks in a row and up again after --rise
    /// good ones. Without a check, every member counts as up.
    ///
    /// Example:
    ///   yunhan lb health set lb1 --listener http --type http --path /healthz --interval 2s
    ///   yunhan lb health set lb1 --listener http --type http --expected-codes 200,204
    ///   yunhan lb health set lb1 --listener db --type tcp --interval 5s --timeout 2s
    ///   yunhan lb health set lb1 --listener tls --type https --path /ping  # TLS members
    ///   yunhan lb health set lb1 --listener dns --type udp-connect
    ///   yunhan lb health clear lb1 --listener db
    #[command(subcommand, verbatim_doc_comment)]
    Health(HealthCommand),
    /// Layer-7 rules: HTTP requests by host and path to members of their own
    ///
    /// A rule of an http or https listener matches the request's Host (without its port,
    /// any case), the start of its path, or both; the first rule that matches sends the
    /// request to the rule's members (add them with 'yunhan lb member add --rule'),
    /// redirects it (--redirect) or refuses it (--reject, 403); requests no rule matches
    /// go to the listener's members. The listener's health check covers them all.
    ///
    /// Example:
    ///   yunhan lb rule add lb1 --listener http --name api --host api.example.com
    ///   yunhan lb rule add lb1 --listener http --name static --path-prefix /static/
    ///   yunhan lb rule add lb1 --listener http --name old --path-prefix /old/ \
    ///       --redirect https://www.example.com/ --redirect-code 301
    ///   yunhan lb rule add lb1 --listener http --name admin --path-prefix /admin --reject
    ///   yunhan lb member add lb1 --listener http --rule api --vm api1 --port 8080
    ///   yunhan lb rule list lb1 --listener http
    ///   yunhan lb rule remove lb1 --listener http --name static
    #[command(subcommand, verbatim_doc_comment)]
    Rule(RuleCommand),
}

#[derive(Args, Debug, Clone)]
pub struct LbCreate {
    pub name: String,
    /// The subnet of its virtual address (name or id)
    #[arg(long)]
    pub subnet: String,
    /// Also reachable from outside, through an elastic IP of the default external network
    #[arg(long)]
    pub external: bool,
    /// Serve it from this many hosts at once (1-4). Each replica has an address of its
    /// own; the VPC's routers spread flows over them, every replica picks the same member
    /// for the same flow, and a lost host's replica moves with its flows to another host.
    /// With --external, outside traffic enters through the first replica's host and each
    /// replica answers through its own
    #[arg(long, value_name = "N")]
    pub replicas: Option<u8>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ListenerCommand {
    /// List a load balancer's listeners
    #[command(alias = "ls")]
    List {
        /// The load balancer (name or id)
        lb: String,
    },
    /// Add a listener
    Add(ListenerAdd),
    /// Remove a listener, with its members and health check
    #[command(alias = "rm")]
    Remove {
        /// The load balancer (name or id)
        lb: String,
        /// The listener ('yunhan lb listener list')
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ListenerAdd {
    /// The load balancer (name or id)
    pub lb: String,
    /// Its name, unique in the load balancer (letters, digits, '-', '_')
    #[arg(long)]
    pub name: String,
    /// tcp, udp: connections (datagrams) are passed through by Vortex (HAProxy for tcp
    /// with --algorithm least-connections, --connection-limit or http-cookie); http:
    /// requests are proxied; https: TLS ends here (--certificate, --key), requests go on
    /// as plain HTTP
    #[arg(long, value_parser = protocol())]
    pub protocol: LbProtocol,
    /// https: the certificate chain, a PEM file
    #[arg(long, value_name = "FILE", requires = "key")]
    pub certificate: Option<std::path::PathBuf>,
    /// https: the certificate's private key, a PEM file (kept as a secret: never shown again)
    #[arg(long, value_name = "FILE", requires = "certificate")]
    pub key: Option<std::path::PathBuf>,
    /// The port on the load balancer's address
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How new connections are spread (source-ip: a client stays on one member)
    #[arg(long, default_value = "round-robin", value_parser = algorithm())]
    pub algorithm: LbAlgorithm,
    /// At most this many connections at once (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub connection_limit: u32,
    /// Keep a client on its member: source-ip (its address, 30 minutes, any protocol),
    /// http-cookie (a cookie the load balancer sets; http and https) or app-cookie (the
    /// application's own cookie, --persistence-cookie; http and https)
    #[arg(long, default_value = "none", value_parser = persistence())]
    pub persistence: Persistence,
    /// With --persistence app-cookie: the application's cookie, e.g. JSESSIONID
    #[arg(long, value_name = "NAME")]
    pub persistence_cookie: Option<String>,
    /// Close a connection whose client stays silent this long: 30s, 500ms, 1h
    /// [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_ms)]
    pub timeout_client: Option<u32>,
    /// Give up connecting to a member after this long [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_ms)]
    pub timeout_member_connect: Option<u32>,
    /// Close a connection whose member stays silent this long [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_ms)]
    pub timeout_member_data: Option<u32>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum MemberCommand {
    /// Add a member to a listener
    Add(MemberAdd),
    /// Give a member no new connections (weight 0); its open connections stay
    Drain(MemberPick),
    /// Change a member's weight (e.g. back from a drain)
    Set(MemberSet),
    /// Remove a member from a listener
    #[command(alias = "rm")]
    Remove(MemberPick),
}

/// A member of a listener: exactly one of `--vm`, `--nic`, `--address`.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("member").required(true).args(["vm", "nic", "address"])))]
pub struct MemberAt {
    /// The load balancer (name or id)
    pub lb: String,
    /// The listener ('yunhan lb listener list')
    #[arg(long)]
    pub listener: String,
    /// A member of this layer-7 rule of the listener rather than of the listener itself
    #[arg(long)]
    pub rule: Option<String>,
    /// A VM (name or id): its NIC in the load balancer's VPC
    #[arg(long)]
    pub vm: Option<String>,
    /// A NIC of the load balancer's VPC (name or id)
    #[arg(long)]
    pub nic: Option<String>,
    /// A plain address in the VPC
    #[arg(long)]
    pub address: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MemberAdd {
    #[command(flatten)]
    pub at: MemberAt,
    /// The member's port
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Its relative share of new connections, 0–256 (0: drained)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub weight: u16,
}

#[derive(Args, Debug, Clone)]
pub struct MemberPick {
    #[command(flatten)]
    pub at: MemberAt,
    /// Only the member on this port [default: every port of it]
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Args, Debug, Clone)]
pub struct MemberSet {
    #[command(flatten)]
    pub pick: MemberPick,
    /// Its relative share of new connections, 0–256 (0: drained)
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub weight: u16,
}

#[derive(Subcommand, Debug, Clone)]
pub enum HealthCommand {
    /// Set (or replace) a listener's health check
    Set(HealthSet),
    /// Remove a listener's health check (every member counts as up)
    Clear {
        /// The load balancer (name or id)
        lb: String,
        /// The listener ('yunhan lb listener list')
        #[arg(long)]
        listener: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct HealthSet {
    /// The load balancer (name or id)
    pub lb: String,
    /// The listener ('yunhan lb listener list')
    #[arg(long)]
    pub listener: String,
    /// tcp: the member accepts a connection; http: GET --path answers an expected code;
    /// https: the same over TLS, for a tcp listener whose members speak TLS (their
    /// certificate is not verified); udp-connect: for udp listeners, a datagram draws no
    /// ICMP port unreachable
    #[arg(long = "type", value_name = "TYPE", value_parser = health_kind())]
    pub kind: HealthKind,
    /// With --type http or https: the path to GET [default: /]
    #[arg(long)]
    pub path: Option<String>,
    /// With --type http or https: the answers that count as up, like 200, 200,204 or
    /// 200-299 [default: 200-399]
    #[arg(long, value_name = "CODES")]
    pub expected_codes: Option<String>,
    /// Time between checks: 2s, 500ms (rounded up to whole seconds) or seconds
    #[arg(long, default_value = "2s", value_parser = parse_secs)]
    pub interval: u32,
    /// How long a check may take (as --interval)
    #[arg(long, default_value = "1s", value_parser = parse_secs)]
    pub timeout: u32,
    /// Failed checks in a row that take a member down (1–10)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub fall: u32,
    /// Good checks in a row that bring it up again (1–10)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rise: u32,
}

/// `tcp`, `udp`, `http` or `https` (the protocols listeners support).
fn protocol() -> impl TypedValueParser<Value = LbProtocol> {
    PossibleValuesParser::new(["tcp", "udp", "http", "https"]).map(|s| match s.as_str() {
        "udp" => LbProtocol::Udp,
        "http" => LbProtocol::Http,
        "https" => LbProtocol::Https,
        _ => LbProtocol::Tcp,
    })
}

/// The text of a PEM file given on the command line.
fn pem(path: Option<&std::path::Path>) -> Result<Option<String>, ClientError> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", p.display())))
    })
    .transpose()
}

/// `round-robin`, `least-connections` or `source-ip` (or as tables write them, `round_robin`…).
fn algorithm() -> impl TypedValueParser<Value = LbAlgorithm> {
    let names = [
        PossibleValue::new("round-robin").alias("round_robin"),
        PossibleValue::new("least-connections").alias("least_connections"),
        PossibleValue::new("source-ip").alias("source_ip"),
    ];
    PossibleValuesParser::new(names).map(|s| match s.replace('_', "-").as_str() {
        "least-connections" => LbAlgorithm::LeastConnections,
        "source-ip" => LbAlgorithm::SourceIp,
        _ => LbAlgorithm::RoundRobin,
    })
}

/// `none`, `source-ip`, `http-cookie` or `app-cookie` (or as JSON writes them, `source_ip`…).
fn persistence() -> impl TypedValueParser<Value = Persistence> {
    let names = [
        PossibleValue::new("none"),
        PossibleValue::new("source-ip").alias("source_ip"),
        PossibleValue::new("http-cookie").alias("http_cookie"),
        PossibleValue::new("app-cookie").alias("app_cookie"),
    ];
    PossibleValuesParser::new(names).map(|s| match s.replace('_', "-").as_str() {
        "source-ip" => Persistence::SourceIp,
        "http-cookie" => Persistence::HttpCookie,
        "app-cookie" => Persistence::AppCookie,
        _ => Persistence::None,
    })
}

/// `tcp` or `http`.
fn health_kind() -> impl TypedValueParser<Value = HealthKind> {
    PossibleValuesParser::new(["tcp", "http", "https", "udp-connect"]).map(|s| match s.as_str() {
        "http" => HealthKind::Http,
        "https" => HealthKind::Https,
        "udp-connect" => HealthKind::UdpConnect,
        _ => HealthKind::Tcp,
    })
}

/// Milliseconds: `30s`, `500ms`, `1h`, or a plain number of seconds.
fn parse_ms(s: &str) -> Result<u32, String> {
    let d = parse_duration(s)
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 30 (seconds)"))?;
    u32::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// Whole seconds: `2s`, `500ms` (rounded up), `1m`, or a plain number of seconds.
fn parse_secs(s: &str) -> Result<u32, String> {
    let d = parse_duration(s)
        .map_err(|_| format!("{s:?} is not a duration like 2s, 500ms or 2 (seconds)"))?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).map_err(|_| format!("{s:?} is too long"))
}

impl Shown for LoadBalancer {
    const NOUN: &'static str = "load balancer";
    const COLUMNS: &'static [Column<Doc<LoadBalancer>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("ADDRESS", status.address),
        Column {
            header: "EXTERNAL",
            get: |v| match (v.spec.external, v.status.external_address.as_str()) {
                (false, _) => "-".into(),
                (true, "") => "pending".into(),
                (true, address) => address.into(),
            },
        },
        col!("HOST", status.host),
        Column {
            header: "LISTENERS",
            get: |v| {
                let each = v
                    .spec
                    .listeners
                    .iter()
                    .map(|l| format!("{}:{}", l.name, l.port));
                join(&each.collect::<Vec<_>>())
            },
        },
    ];
}

/// How many of [`LISTENER_COLUMNS`] `lb listener list` shows (`lb show` shows them all).
const LISTED: usize = 5;

const LISTENER_COLUMNS: &[Column<Listener>] = &[
    col!("NAME", name),
    col!("PROTOCOL", protocol),
    col!("PORT", port),
    col!("ALGORITHM", algorithm),
    Column {
        header: "MEMBERS",
        get: |l| l.members.len().to_string(),
    },
    Column {
        header: "LIMIT",
        get: |l| match l.connection_limit {
            0 => "-".into(),
            n => n.to_string(),
        },
    },
    Column {
        header: "TIMEOUTS",
        get: timeouts,
    },
    Column {
        header: "CHECK",
        get: |l| l.health.as_ref().map_or_else(|| "-".into(), check),
    },
    Column {
        header: "PERSISTENCE",
        get: |l| cell(&l.persistence),
    },
    Column {
        header: "RULES",
        get: |l| join(&l.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
    },
];

/// The timeouts set, in words (`-`: the defaults).
fn timeouts(l: &Listener) -> String {
    let set: Vec<String> = [
        ("client", l.timeout_client_data_ms),
        ("connect", l.timeout_member_connect_ms),
        ("member", l.timeout_member_data_ms),
    ]
    .into_iter()
    .filter_map(|(what, ms)| Some(format!("{what} {}", human_ms(ms?))))
    .collect();
    join(&set)
}

/// `1500ms`, `30s`, `2m`: the largest whole unit.
fn human_ms(ms: u32) -> String {
    match ms {
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

/// A health check in words.
fn check(h: &HealthMonitor) -> String {
    let what = match h.kind {
        HealthKind::Tcp => "tcp".to_string(),
        HealthKind::Http => format!("http GET {} expects {}", h.path, h.expected_codes),
        HealthKind::Https => format!("https GET {} expects {}", h.path, h.expected_codes),
        HealthKind::UdpConnect => "udp (no port unreachable)".to_string(),
    };
    format!(
        "{what} every {}s (timeout {}s, fall {}, rise {})",
        h.interval_secs, h.timeout_secs, h.fall, h.rise
    )
}

/// A row of `lb show`'s members table.
struct MemberRow {
    listener: String,
    member: String,
    address: String,
    port: u16,
    weight: u16,
    health: String,
}

const MEMBER_COLUMNS: &[Column<MemberRow>] = &[
    col!("LISTENER", listener),
    col!("MEMBER", member),
    col!("ADDRESS", address),
    col!("PORT", port),
    col!("WEIGHT", weight),
    col!("HEALTH", health),
];

/// `lb show`'s replicas: each one's own address (where members see its connections come
/// from), host and phase, and the connections it balanced.
const REPLICA_COLUMNS: &[Column<LbReplica>] = &[
    col!("REPLICA", address),
    col!("HOST", host),
    col!("PHASE", phase),
    Column {
        header: "CONNECTIONS",
        get: |r| {
            r.listeners
                .iter()
                .map(|l| l.connections)
                .sum::<u64>()
                .to_string()
        },
    },
    col!("MESSAGE", message),
];

pub(crate) async fn run(ctx: &Ctx, cmd: LbCommand) -> Result<(), ClientError> {
    match cmd {
        LbCommand::Common(Common::Show { name }) => {
            print_details(ctx, &ctx.fetch::<LoadBalancer>(&name).await?).await
        }
        LbCommand::Common(verb) => ctx.common::<LoadBalancer>(verb).await,
        LbCommand::Create(a) => create(ctx, a).await,
        LbCommand::Metrics(a) => crate::commands::metrics::show::<LoadBalancer>(ctx, &a).await,
        LbCommand::Listener(c) => listener(ctx, c).await,
        LbCommand::Member(c) => member(ctx, c).await,
        LbCommand::Rule(c) => rule::run(ctx, c).await,
        LbCommand::Health(HealthCommand::Set(a)) => {
            let http = matches!(a.kind, HealthKind::Http | HealthKind::Https);
            if !http && (a.path.is_some() || a.expected_codes.is_some()) {
                return Err(ClientError::Usage(
                    "--path and --expected-codes are for --type http or https checks (a tcp \
                     or udp-connect check sends no request)"
                        .into(),
                ));
            }
            let defaults = HealthMonitor::default();
            let monitor = HealthMonitor {
                kind: a.kind,
                path: a.path.unwrap_or(defaults.path),
                expected_codes: a.expected_codes.unwrap_or(defaults.expected_codes),
                interval_secs: a.interval,
                timeout_secs: a.timeout,
                rise: a.rise,
                fall: a.fall,
            };
            edit(ctx, &a.lb, |s| {
                let i = listener_at(s, &a.lb, &a.listener)?;
                s.listeners[i].health = Some(monitor.clone());
                Ok(())
            })
            .await
        }
        LbCommand::Health(HealthCommand::Clear { lb, listener }) => {
            edit(ctx, &lb, |s| {
                let i = listener_at(s, &lb, &listener)?;
                s.listeners[i].health = None;
                Ok(())
            })
            .await
        }
    }
}

async fn create(ctx: &Ctx, a: LbCreate) -> Result<(), ClientError> {
    let spec = LoadBalancerSpec {
        subnet: a.subnet,
        external: a.external,
        replicas: a.replicas,
        listeners: Vec::new(),
    };
    let mut v = ctx.create::<LoadBalancer>(&a.name, spec).await?;
    if a.wait.wait {
        let path = format!("/v1/{}/{}", LoadBalancer::PLURAL, v.metadata.id);
        let what = format!("load balancer {} to be Active", a.name);
        let done = |cur: Option<&Doc<LoadBalancer>>| active(&a.name, cur);
        v = wait_for::<LoadBalancer>(&ctx.client, &path, &what, a.wait.timeout, done)
            .await?
            .unwrap_or(v);
    }
    print_details(ctx, &v).await
}

/// Whether `lb create --wait` is done: Active, or Failed (an error with its message).
fn active(name: &str, cur: Option<&Doc<LoadBalancer>>) -> Verdict {
    let Some(cur) = cur else {
        return Some(Err(format!("load balancer {name} was deleted")));
    };
    match cur.status.phase {
        LbPhase::Active => Some(Ok(())),
        LbPhase::Failed => Some(Err(format!(
            "load balancer {name} failed: {}",
            cell(&cur.status.message)
        ))),
        LbPhase::Provisioning => None,
    }
}

async fn listener(ctx: &Ctx, cmd: ListenerCommand) -> Result<(), ClientError> {
    match cmd {
        ListenerCommand::List { lb } => {
            let v = ctx.fetch::<LoadBalancer>(&lb).await?;
            print_all(ctx.format, &LISTENER_COLUMNS[..LISTED], &listeners(&v));
            Ok(())
        }
        ListenerCommand::Add(a) => {
            let listener = Listener {
                certificate: pem(a.certificate.as_deref())?,
                key: pem(a.key.as_deref())?,
                name: a.name,
                protocol: a.protocol,
                port: a.port,
                algorithm: a.algorithm,
                connection_limit: a.connection_limit,
                persistence: a.persistence,
                persistence_cookie: a.persistence_cookie,
                timeout_client_data_ms: a.timeout_client,
                timeout_member_connect_ms: a.timeout_member_connect,
                timeout_member_data_ms: a.timeout_member_data,
                ..Default::default()
            };
            edit(ctx, &a.lb, |s| {
                s.listeners.push(listener.clone());
                Ok(())
            })
            .await
        }
        ListenerCommand::Remove { lb, name } => {
            edit(ctx, &lb, |s| {
                let i = listener_at(s, &lb, &name)?;
                s.listeners.remove(i);
                Ok(())
            })
            .await
        }
    }
}

/// A load balancer's listeners, each with its JSON as stored (what `-o json` prints).
fn listeners(v: &Obj<LoadBalancer>) -> Vec<Answer<Listener>> {
    let raw = &v.raw["spec"]["listeners"];
    (v.value.spec.listeners.iter().enumerate())
        .map(|(i, l)| Answer {
            raw: raw[i].clone(),
            value: l.clone(),
        })
        .collect()
}

async fn member(ctx: &Ctx, cmd: MemberCommand) -> Result<(), ClientError> {
    match cmd {
        MemberCommand::Add(a) => {
            let at = &a.at;
            let pick = pick(ctx, at, Some(a.port)).await?;
            let member = LbMember {
                vm: at.vm.clone(),
                nic: at.nic.clone(),
                address: at.address.clone().unwrap_or_default(),
                port: a.port,
                weight: a.weight,
            };
            edit(ctx, &at.lb, |s| {
                let members = pool_at(s, at)?;
                if members.iter().any(|m| pick.matches(m)) {
                    return Err(ClientError::Usage(format!(
                        "{pick} is already a member of {} ('yunhan lb show {}'); remove it first to add it again",
                        pool_name(at),
                        at.lb
                    )));
                }
                members.push(member.clone());
                Ok(())
            })
            .await
        }
        MemberCommand::Drain(a) => weigh(ctx, &a, 0).await,
        MemberCommand::Set(a) => weigh(ctx, &a.pick, a.weight).await,
        MemberCommand::Remove(a) => {
            let pick = pick(ctx, &a.at, a.port).await?;
            edit(ctx, &a.at.lb, |s| {
                picked(s, &a.at, &pick)?.retain(|m| !pick.matches(m));
                Ok(())
            })
            .await
        }
    }
}

/// Changes the load balancer's spec, then prints it as `lb show` does.
async fn edit(
    ctx: &Ctx,
    lb: &str,
    change: impl FnMut(&mut LoadBalancerSpec) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let v = ctx.update_spec::<LoadBalancer>(lb, change).await?;
    print_details(ctx, &v).await
}

/// The index of listener `name` of load balancer `lb`; none is an error saying what there is.
fn listener_at(spec: &LoadBalancerSpec, lb: &str, name: &str) -> Result<usize, ClientError> {
    if let Some(i) = spec.listeners.iter().position(|l| l.name == name) {
        return Ok(i);
    }
    let names: Vec<_> = spec.listeners.iter().map(|l| l.name.as_str()).collect();
    Err(ClientError::Usage(if names.is_empty() {
        format!(
            "load balancer {lb} has no listeners yet; add one with 'yunhan lb listener add {lb} --name NAME --protocol tcp --port PORT'"
        )
    } else {
        format!(
            "load balancer {lb} has no listener {name:?}; it has {} ('yunhan lb listener list {lb}')",
            names.join(", ")
        )
    }))
}

/// A member as the user names it: by VM, NIC or address, maybe only on one port. A
/// VM or NIC is stored by id and typed by name: it matches as either.
#[derive(Debug, Clone)]
struct Pick {
    by: By,
    /// What was typed, and the id it names when that object exists.
    keys: Vec<String>,
    port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Vm,
    Nic,
    /// A member's address, however it was given (plain, or filled from its VM or NIC).
    Address,
}

impl Pick {
    fn matches(&self, m: &LbMember) -> bool {
        let stored = match self.by {
            By::Vm => m.vm.as_deref(),
            By::Nic => m.nic.as_deref(),
            By::Address => Some(m.address.as_str()),
        };
        stored.is_some_and(|s| self.keys.iter().any(|k| k == s))
            && self.port.is_none_or(|p| p == m.port)
    }
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.by {
            By::Vm => "vm ",
            By::Nic => "nic ",
            By::Address => "address ",
        };
        write!(f, "{by}{}", self.keys[0])?;
        match self.port {
            Some(p) => write!(f, " port {p}"),
            None => Ok(()),
        }
    }
}

/// The member `at` names, on `port` (or any).
async fn pick(ctx: &Ctx, at: &MemberAt, port: Option<u16>) -> Result<Pick, ClientError> {
    let (by, given, id) = match (&at.vm, &at.nic, &at.address) {
        (Some(vm), _, _) => (By::Vm, vm, id_of::<Instance>(ctx, vm).await?),
        (_, Some(nic), _) => (By::Nic, nic, id_of::<NetworkInterface>(ctx, nic).await?),
        (_, _, Some(address)) => (By::Address, address, None),
        _ => {
            return Err(ClientError::Usage(
                "give the member as --vm, --nic or --address".into(),
            ))
        }
    };
    let keys = std::iter::once(given.clone()).chain(id).collect();
    Ok(Pick { by, keys, port })
}

/// The id of `name`, or `None` when it does not exist (a member may name one deleted since).
async fn id_of<K: Kind>(ctx: &Ctx, name: &str) -> Result<Option<String>, ClientError> {
    match ctx.fetch::<K>(name).await {
        Ok(v) => Ok(Some(v.value.metadata.id)),
        Err(ClientError::Api(e, 404)) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The members of the listener (or its rule) `at` names; none is an error saying what
/// there is.
fn pool_at<'a>(
    spec: &'a mut LoadBalancerSpec,
    at: &MemberAt,
) -> Result<&'a mut Vec<LbMember>, ClientError> {
    let i = listener_at(spec, &at.lb, &at.listener)?;
    let l = &mut spec.listeners[i];
    match &at.rule {
        None => Ok(&mut l.members),
        Some(r) => {
            let k = rule::rule_at(l, &at.lb, r)?;
            Ok(&mut l.rules[k].members)
        }
    }
}

/// `listener http` or `rule api of listener http`.
fn pool_name(at: &MemberAt) -> String {
    match &at.rule {
        None => format!("listener {}", at.listener),
        Some(r) => format!("rule {r} of listener {}", at.listener),
    }
}

/// The members of the listener (or rule) `at` names, when `pick` selects one of them;
/// else an error saying which members there are.
fn picked<'a>(
    spec: &'a mut LoadBalancerSpec,
    at: &MemberAt,
    pick: &Pick,
) -> Result<&'a mut Vec<LbMember>, ClientError> {
    let lb = &at.lb;
    let (pool, flag) = match &at.rule {
        None => (pool_name(at), format!("--listener {}", at.listener)),
        Some(r) => (
            pool_name(at),
            format!("--listener {} --rule {r}", at.listener),
        ),
    };
    let members = pool_at(spec, at)?;
    if members.iter().any(|m| pick.matches(m)) {
        return Ok(members);
    }
    Err(ClientError::Usage(if members.is_empty() {
        format!(
            "{pool} of load balancer {lb} has no members; add one with 'yunhan lb member add {lb} {flag} --vm VM --port PORT'"
        )
    } else {
        let ids = HashMap::new();
        let members: Vec<_> = (members.iter())
            .map(|m| match (who(m, &ids), m.address.as_str()) {
                (Some(by), "") => format!("{by} port {}", m.port),
                (Some(by), address) => format!("{by} ({address}) port {}", m.port),
                (None, address) => format!("{address} port {}", m.port),
            })
            .collect();
        format!(
            "{pool} of load balancer {lb} has no member {pick}; it has {} ('yunhan lb show {lb}' names them)",
            members.join(", ")
        )
    }))
}

/// The VM or NIC a member names, `vm w1` or `nic n1`: by its name in `names`
/// (id → name), else by id; `None` for a plain address.
fn who(m: &LbMember, names: &HashMap<String, String>) -> Option<String> {
    let (by, id) = match (&m.vm, &m.nic) {
        (Some(vm), _) => ("vm", vm),
        (_, Some(nic)) => ("nic", nic),
        _ => return None,
    };
    Some(format!("{by} {}", names.get(id).unwrap_or(id)))
}

/// Prints the load balancer: its row, then (in a table) its listeners and its members
/// with their health; `-o json` prints the document as stored.
async fn print_details(ctx: &Ctx, v: &Obj<LoadBalancer>) -> Result<(), ClientError> {
    ctx.print::<LoadBalancer>(v);
    if ctx.format == Format::Table {
        let names = member_names(ctx, &v.value).await?;
        print!("{}", details(&v.value, &names));
    }
    Ok(())
}

/// The names of the VMs and NICs the members name by id (id → name).
async fn member_names(
    ctx: &Ctx,
    lb: &Doc<LoadBalancer>,
) -> Result<HashMap<String, String>, ClientError> {
    let members = || {
        (lb.spec.listeners.iter())
            .flat_map(|l| l.pools())
            .flat_map(|(_, m)| m)
    };
    let mut names = HashMap::new();
    if members().any(|m| m.vm.is_some()) {
        names.extend(named::<Instance>(ctx).await?);
    }
    if members().any(|m| m.nic.is_some()) {
        names.extend(named::<NetworkInterface>(ctx).await?);
    }
    Ok(names)
}

/// Every object of kind `K` as (id, name).
async fn named<K: Kind>(ctx: &Ctx) -> Result<Vec<(String, String)>, ClientError> {
    let all: Vec<Obj<K>> = ctx.client.list_as(&format!("/v1/{}", K::PLURAL)).await?;
    Ok((all.into_iter())
        .map(|v| (v.value.metadata.id, v.value.metadata.name))
        .collect())
}

/// What `lb show` prints under the load balancer's row: its listeners, then every
/// member with its health (nothing without listeners).
fn details(lb: &Doc<LoadBalancer>, names: &HashMap<String, String>) -> String {
    let mut out = String::new();
    if lb.spec.listeners.is_empty() {
        return out;
    }
    if !lb.status.replicas.is_empty() {
        out.push('\n');
        out.push_str(&table(REPLICA_COLUMNS, &lb.status.replicas));
    }
    out.push('\n');
    out.push_str(&table(LISTENER_COLUMNS, &lb.spec.listeners));
    let members = member_rows(lb, names);
    if !members.is_empty() {
        out.push('\n');
        out.push_str(&table(MEMBER_COLUMNS, &members));
    }
    out
}

/// Every member of every listener, with its health as the agent reports it (by address
/// and port; `-` until it does).
fn member_rows(lb: &Doc<LoadBalancer>, names: &HashMap<String, String>) -> Vec<MemberRow> {
    let mut rows = Vec::new();
    for l in &lb.spec.listeners {
        let status = lb.status.listeners.iter().find(|s| s.name == l.name);
        for (rule, m) in l.pools().flat_map(|(r, ms)| ms.iter().map(move |m| (r, m))) {
            let seen = (status.into_iter())
                .flat_map(|s| &s.members)
                .find(|s| s.rule == rule && s.address == m.address && s.port == m.port);
            rows.push(MemberRow {
                listener: match rule {
                    "" => l.name.clone(),
                    r => format!("{}/{r}", l.name),
                },
                member: who(m, names).unwrap_or_else(|| "-".into()),
                address: m.address.clone(),
                port: m.port,
                weight: m.weight,
                health: seen.map_or_else(|| "-".into(), |s| cell(&s.health)),
            });
        }
    }
    rows
}

/// Sets the weight of the picked members (0: drained).
async fn weigh(ctx: &Ctx, a: &MemberPick, weight: u16) -> Result<(), ClientError> {
    let pick = pick(ctx, &a.at, a.port).await?;
    edit(ctx, &a.at.lb, |s| {
        (picked(s, &a.at, &pick)?.iter_mut())
            .filter(|m| pick.matches(m))
            .for_each(|m| m.weight = weight);
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn parse(line: &str) -> Result<LbCommand, clap::Error> {
        let cli = Cli::line(line)?;
        match cli.command {
            Command::Lb(c) => Ok(c),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn help_parses_and_teaches() {
        for line in [
            "yunhan lb --help",
            "yunhan load-balancer --help",
            "yunhan lb listener --help",
            "yunhan lb member --help",
            "yunhan lb health --help",
        ] {
            let help = Cli::help(line);
            assert!(help.contains("Example:\n  yunhan lb "), "{line}: {help}");
        }
    }

    /// The commands of the issue's contract, as they are typed.
    #[test]
    fn the_contract_parses() {
        let LbCommand::Create(c) =
            parse("yunhan lb create lb1 --subnet s1 --external --wait").unwrap()
        else {
            panic!()
        };
        assert_eq!((c.name.as_str(), c.subnet.as_str()), ("lb1", "s1"));
        assert!(c.external && c.wait.wait);
        let LbCommand::Listener(ListenerCommand::Add(l)) =
            parse("yunhan lb listener add lb1 --name http --protocol http --port 80").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (l.protocol, l.port, l.algorithm),
            (LbProtocol::Http, 80, LbAlgorithm::RoundRobin)
        );
        let LbCommand::Member(MemberCommand::Add(m)) =
            parse("yunhan lb member add lb1 --listener http --vm w1 --port 80").unwrap()
        else {
            panic!()
        };
        assert_eq!((m.at.vm.as_deref(), m.port, m.weight), (Some("w1"), 80, 1));
        let LbCommand::Health(HealthCommand::Set(h)) = parse(
            "yunhan lb health set lb1 --listener http --type http --path / --interval 2s --fall 2 --rise 2",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (h.kind, h.interval, h.timeout, h.fall, h.rise),
            (HealthKind::Http, 2, 1, 2, 2)
        );
        let show = parse("yunhan lb show lb1 -o json").unwrap();
        assert!(matches!(show, LbCommand::Common(Common::Show { name }) if name == "lb1"));
        let LbCommand::Listener(ListenerCommand::Add(t)) =
            parse("yunhan lb listener add lb1 --name tcp --protocol tcp --port 8080 --algorithm source_ip")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.protocol, t.algorithm),
            (LbProtocol::Tcp, LbAlgorithm::SourceIp)
        );
    }

    #[test]
    fn a_drain_is_undone_by_setting_the_weight() {
        let LbCommand::Member(MemberCommand::Set(a)) =
            parse("yunhan lb member set lb1 --listener long --vm w1 --weight 1").unwrap()
        else {
            panic!()
        };
        assert_eq!((a.weight, a.pick.at.vm.as_deref()), (1, Some("w1")));
        assert!(parse("yunhan lb member set lb1 --listener long --vm w1").is_err());
        assert!(parse("yunhan lb member set lb1 --listener l --vm w1 --weight 300").is_err());
    }

    #[test]
    fn a_member_is_exactly_one_of_vm_nic_address() {
        for bad in [
            "yunhan lb member add lb1 --listener http --port 80",
            "yunhan lb member add lb1 --listener http --vm w1 --nic n1 --port 80",
            "yunhan lb member drain lb1 --listener http",
            "yunhan lb member add lb1 --listener http --vm w1 --port 80 --weight 257",
            "yunhan lb listener add lb1 --name x --protocol sctp --port 53",
            "yunhan lb listener add lb1 --name x --protocol https --port 443 --key k.pem",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let LbCommand::Member(MemberCommand::Remove(r)) =
            parse("yunhan lb member rm lb1 --listener http --address 10.0.1.9").unwrap()
        else {
            panic!()
        };
        assert_eq!((r.at.address.as_deref(), r.port), (Some("10.0.1.9"), None));
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_secs("2s"), Ok(2));
        assert_eq!(parse_secs("3"), Ok(3));
        assert_eq!(parse_secs("500ms"), Ok(1));
        assert_eq!(parse_secs("1001ms"), Ok(2));
        assert_eq!(parse_secs("1m"), Ok(60));
        for bad in ["soon", "2h", "1.5s", "", "-1"] {
            let e = parse_secs(bad).unwrap_err();
            assert!(e.contains("is not a duration like 2s"), "{bad}: {e}");
        }
    }

    fn member(vm: Option<&str>, address: &str, port: u16) -> LbMember {
        LbMember {
            vm: vm.map(Into::into),
            address: address.into(),
            port,
            weight: 1,
            ..Default::default()
        }
    }

    fn by(by: By, keys: &[&str], port: Option<u16>) -> Pick {
        let keys = keys.iter().map(|k| k.to_string()).collect();
        Pick { by, keys, port }
    }

    #[test]
    fn members_are_picked_by_name_or_id() {
        let stored = member(Some("ins-1"), "10.0.1.5", 80);
        assert!(by(By::Vm, &["w1", "ins-1"], None).matches(&stored));
        assert!(by(By::Vm, &["ins-1"], Some(80)).matches(&stored));
        assert!(!by(By::Vm, &["w1", "ins-1"], Some(81)).matches(&stored));
        assert!(!by(By::Vm, &["w2", "ins-2"], None).matches(&stored));
        assert!(!by(By::Nic, &["ins-1"], None).matches(&stored));
        assert!(by(By::Address, &["10.0.1.5"], Some(80)).matches(&stored));
        assert_eq!(
            by(By::Vm, &["w1", "ins-1"], Some(80)).to_string(),
            "vm w1 port 80"
        );
    }

    fn spec() -> LoadBalancerSpec {
        let http = Listener {
            name: "http".into(),
            protocol: LbProtocol::Http,
            port: 80,
            members: vec![
                member(Some("ins-1"), "10.0.1.5", 80),
                member(None, "10.0.1.9", 8080),
            ],
            ..Default::default()
        };
        let tcp = Listener {
            name: "tcp".into(),
            port: 8080,
            ..Default::default()
        };
        LoadBalancerSpec {
            subnet: "sub-1".into(),
            external: true,
            replicas: None,
            listeners: vec![http, tcp],
        }
    }

    fn usage(e: ClientError) -> String {
        match e {
            ClientError::Usage(m) => m,
            other => panic!("not a usage error: {other}"),
        }
    }

    #[test]
    fn a_missing_listener_or_member_says_what_there_is() {
        let mut s = spec();
        assert_eq!(listener_at(&s, "lb1", "tcp").unwrap(), 1);
        let e = usage(listener_at(&s, "lb1", "web").unwrap_err());
        assert_eq!(
            e,
            "load balancer lb1 has no listener \"web\"; it has http, tcp ('yunhan lb listener list lb1')"
        );
        let none = LoadBalancerSpec::default();
        let e = usage(listener_at(&none, "lb1", "web").unwrap_err());
        assert!(
            e.contains("has no listeners yet; add one with 'yunhan lb listener add lb1"),
            "{e}"
        );

        let at = |listener: &str| MemberAt {
            lb: "lb1".into(),
            listener: listener.into(),
            rule: None,
            vm: None,
            nic: None,
            address: None,
        };
        let w1 = by(By::Vm, &["w1", "ins-1"], None);
        assert_eq!(picked(&mut s, &at("http"), &w1).unwrap().len(), 2);
        let in_rule = MemberAt {
            rule: Some("api".into()),
            ..at("http")
        };
        let e = usage(picked(&mut s, &in_rule, &w1).unwrap_err());
        assert!(e.contains("listener http of load balancer lb1 has no rules; add one with 'yunhan lb rule add lb1 --listener http"), "{e}");
        s.listeners[0].rules.push(yunhan_model::L7Rule {
            name: "api".into(),
            host: "api.example.com".into(),
            ..Default::default()
        });
        let e = usage(picked(&mut s, &in_rule, &w1).unwrap_err());
        assert!(e.contains("rule api of listener http of load balancer lb1 has no members; add one with 'yunhan lb member add lb1 --listener http --rule api"), "{e}");
        s.listeners[0].rules.clear();
        let w2 = by(By::Vm, &["w2", "ins-2"], Some(80));
        let e = usage(picked(&mut s, &at("http"), &w2).unwrap_err());
        assert_eq!(
            e,
            "listener http of load balancer lb1 has no member vm w2 port 80; it has vm ins-1 (10.0.1.5) port 80, 10.0.1.9 port 8080 ('yunhan lb show lb1' names them)"
        );
        let e = usage(picked(&mut s, &at("tcp"), &w1).unwrap_err());
        assert!(e.contains("listener tcp of load balancer lb1 has no members; add one with 'yunhan lb member add lb1 --listener tcp"), "{e}");
        let e = usage(picked(&mut s, &at("web"), &w1).unwrap_err());
        assert!(e.contains("has no listener \"web\""), "{e}");
    }

    /// A load balancer as the API writes it.
    fn doc(phase: &str) -> Doc<LoadBalancer> {
        let mut spec = serde_json::to_value(spec()).unwrap();
        spec["listeners"][0]["health"] = json!({"type": "http", "path": "/healthz", "interval_secs": 2, "timeout_secs": 1, "rise": 2, "fall": 3});
        spec["listeners"][1]["connection_limit"] = json!(100);
        spec["listeners"][1]["timeout_client_data_ms"] = json!(120_000);
        spec["listeners"][1]["timeout_member_connect_ms"] = json!(1_500);
        spec["listeners"][0]["members"][1]["weight"] = json!(0);
        spec["listeners"][0]["persistence"] = json!("http_cookie");
        spec["listeners"][0]["rules"] = json!([{"name": "api", "host": "api.example.com",
            "members": [{"address": "10.0.1.7", "port": 9000}]}]);
        let raw = json!({
            "metadata": {"id": "lb-1", "name": "lb1", "project": "prj-1", "created": "2024-01-01T00:00:00Z", "revision": 7},
            "spec": spec,
            "status": {
                "phase": phase, "message": if phase == "Failed" { "no host can serve it" } else { "" },
                "vpc": "vpc-1", "address": "10.0.1.2", "external_address": "203.0.113.7",
                "nic": "nic-9", "elastic_ip": "eip-1", "device": "tap-lb1", "mac": "02:00:00:00:00:01",
                "prefix_len": 24, "gateway": "10.0.1.1", "host": "host-a", "served": "abc",
                "listeners": [{"name": "http", "engine": "haproxy", "connections": 12, "bytes_in": 1, "bytes_out": 2,
                    "members": [{"address": "10.0.1.5", "port": 80, "health": "up"}, {"address": "10.0.1.9", "port": 8080, "health": "drained"},
                        {"rule": "api", "address": "10.0.1.7", "port": 9000, "health": "down"}]}],
            },
        });
        Answer::read(raw).unwrap().value
    }

    #[test]
    fn show_prints_listeners_and_members_with_their_health() {
        let lb = doc("Active");
        let names = HashMap::from([("ins-1".to_string(), "w1".to_string())]);
        let all = table(LoadBalancer::COLUMNS, [&lb]) + &details(&lb, &names);
        insta::assert_snapshot!(all, @r"
        NAME  ADDRESS   EXTERNAL     HOST    LISTENERS         PHASE   ID    MESSAGE
        lb1   10.0.1.2  203.0.113.7  host-a  http:80,tcp:8080  Active  lb-1  -

        NAME  PROTOCOL  PORT  ALGORITHM    MEMBERS  LIMIT  TIMEOUTS                  CHECK                                                                    PERSISTENCE  RULES
        http  http      80    round_robin  2        -      -                         http GET /healthz expects 200-399 every 2s (timeout 1s, fall 3, rise 2)  http_cookie  api
        tcp   tcp       8080  round_robin  0        100    client 2m,connect 1500ms  -                                                                        none         -

        LISTENER  MEMBER  ADDRESS   PORT  WEIGHT  HEALTH
        http      vm w1   10.0.1.5  80    1       up
        http      -       10.0.1.9  8080  0       drained
        http/api  -       10.0.1.7  9000  1       down
        ");
        let listed = table(&LISTENER_COLUMNS[..LISTED], &lb.spec.listeners);
        insta::assert_snapshot!(listed, @r"
        NAME  PROTOCOL  PORT  ALGORITHM    MEMBERS
        http  http      80    round_robin  2
        tcp   tcp       8080  round_robin  0
        ");
        let mut none = doc("Provisioning");
        none.spec.listeners.clear();
        none.status.external_address.clear();
        assert_eq!(details(&none, &names), "");
        insta::assert_snapshot!(table(LoadBalancer::COLUMNS, [&none]), @r"
        NAME  ADDRESS   EXTERNAL  HOST    LISTENERS  PHASE         ID    MESSAGE
        lb1   10.0.1.2  pending   host-a  -          Provisioning  lb-1  -
        ");
    }

    #[test]
    fn show_prints_each_replica() {
        let mut lb = doc("Active");
        lb.spec.listeners.truncate(1);
        let replica = |address: &str, host: &str, phase, conns| LbReplica {
            address: address.into(),
            host: host.into(),
            phase,
            listeners: vec![yunhan_model::ListenerStatus {
                connections: conns,
                ..Default::default()
            }],
            ..Default::default()
        };
        lb.status.replicas = vec![
            replica("10.0.1.3", "host-a", LbPhase::Active, 12),
            replica("10.0.1.4", "host-b", LbPhase::Provisioning, 0),
        ];
        let shown = details(&lb, &HashMap::new());
        let replicas = shown.trim_start().split("\n\n").next().unwrap_or_default();
        insta::assert_snapshot!(replicas, @r"
        REPLICA   HOST    PHASE         CONNECTIONS  MESSAGE
        10.0.1.3  host-a  Active        12           -
        10.0.1.4  host-b  Provisioning  0            -
        ");
    }

    #[test]
    fn create_waits_until_active_or_failed() {
        assert_eq!(active("lb1", Some(&doc("Provisioning"))), None);
        assert_eq!(active("lb1", Some(&doc("Active"))), Some(Ok(())));
        assert_eq!(
            active("lb1", Some(&doc("Failed"))),
            Some(Err("load balancer lb1 failed: no host can serve it".into()))
        );
        assert!(matches!(active("lb1", None), Some(Err(_))));
    }
}
