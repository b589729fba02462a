//! `yunhan sg …` (`security-group`): security groups and their rules.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde::Serialize;
use yunhan_model::network::{
    RuleDirection, RuleProtocol, SecurityGroup, SecurityGroupRule, SecurityGroupSpec,
};
use yunhan_model::Doc;

use crate::client::{Answer, ClientError};
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, print_all, with_phase, Column};

/// Security groups: stateful allow rules for the NICs that are members
///
/// Ingress is denied unless a rule allows it (members of a group always reach each
/// other); egress is open unless the group has egress rules.
///
/// Example:
///   yunhan sg create web --vpc net1
///   yunhan sg rule add web --protocol tcp --port 80 --cidr 0.0.0.0/0
///   yunhan sg rule add web --protocol icmp --group admin
///   yunhan sg rule list web
///   yunhan sg rule delete web 0
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum SgCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(SgCreate),
    /// Rules of a security group
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Args, Debug, Clone)]
pub struct SgCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RuleCommand {
    /// List a group's rules with their numbers
    #[command(alias = "ls")]
    List { group: String },
    /// Add an allow rule
    Add {
        group: String,
        #[arg(long, default_value = "ingress", value_parser = direction())]
        direction: RuleDirection,
        #[arg(long, default_value = "any", value_parser = protocol())]
        protocol: RuleProtocol,
        /// A port or range (tcp/udp only), e.g. 22 or 8000-8080 [default: all]
        #[arg(long, value_parser = parse_ports)]
        port: Option<(u16, u16)>,
        /// The peer's addresses [default: 0.0.0.0/0]
        #[arg(long, conflicts_with = "peer_group")]
        cidr: Option<String>,
        /// The peer is this security group's members
        #[arg(long = "group", id = "peer_group")]
        peer_group: Option<String>,
    },
    /// Delete a rule by its number ('yunhan sg rule list')
    #[command(alias = "rm")]
    Delete { group: String, index: usize },
}

/// `ingress` or `egress`.
fn direction() -> impl TypedValueParser<Value = RuleDirection> {
    PossibleValuesParser::new(["ingress", "egress"]).map(|s| match s.as_str() {
        "egress" => RuleDirection::Egress,
        _ => RuleDirection::Ingress,
    })
}

/// `any`, `tcp`, `udp` or `icmp`.
fn protocol() -> impl TypedValueParser<Value = RuleProtocol> {
    PossibleValuesParser::new(["any", "tcp", "udp", "icmp"]).map(|s| match s.as_str() {
        "tcp" => RuleProtocol::Tcp,
        "udp" => RuleProtocol::Udp,
        "icmp" => RuleProtocol::Icmp,
        _ => RuleProtocol::Any,
    })
}

/// A port or an inclusive range: `22`, `8000-8080`.
fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port (22) or a range (8000-8080) of 1–65535");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

impl Shown for SecurityGroup {
    const NOUN: &'static str = "security group";
    const COLUMNS: &'static [Column<Doc<SecurityGroup>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("VPC", spec.vpc),
        Column {
            header: "RULES",
            get: |v| v.spec.rules.len().to_string(),
        },
    ];
}

/// A row of `sg rule list` (also its JSON).
#[derive(Serialize)]
struct RuleRow {
    index: usize,
    rule: SecurityGroupRule,
}

const RULE_COLUMNS: &[Column<RuleRow>] = &[
    col!("#", index),
    col!("DIRECTION", rule.direction),
    col!("PROTOCOL", rule.protocol),
    Column {
        header: "PORTS",
        get: |v| match (v.rule.port_from, v.rule.port_to) {
            (Some(f), Some(t)) if f != t => format!("{f}-{t}"),
            (Some(f), _) => f.to_string(),
            _ => "all".into(),
        },
    },
    Column {
        header: "PEER",
        get: |v| match (&v.rule.cidr, &v.rule.group) {
            (_, Some(g)) => format!("group {g}"),
            (Some(c), _) => c.clone(),
            _ => "0.0.0.0/0".into(),
        },
    },
];

pub(crate) async fn run(ctx: &Ctx, cmd: SgCommand) -> Result<(), ClientError> {
    match cmd {
        SgCommand::Common(verb) => ctx.common::<SecurityGroup>(verb).await,
        SgCommand::Create(a) => {
            let spec = SecurityGroupSpec {
                vpc: a.vpc,
                rules: Vec::new(),
            };
            ctx.create_print::<SecurityGroup>(&a.name, spec).await
        }
        SgCommand::Rule(RuleCommand::List { group }) => print_rules(ctx, &group).await,
        SgCommand::Rule(RuleCommand::Add {
            group,
            direction,
            protocol,
            port,
            cidr,
            peer_group,
        }) => {
            let rule = SecurityGroupRule {
                direction,
                protocol,
                port_from: port.map(|p| p.0),
                port_to: port.map(|p| p.1),
                cidr,
                group: peer_group,
            };
            add_rule(ctx, &group, rule).await
        }
        SgCommand::Rule(RuleCommand::Delete { group, index }) => {
            delete_rule(ctx, &group, index).await
        }
    }
}

async fn add_rule(ctx: &Ctx, group: &str, rule: SecurityGroupRule) -> Result<(), ClientError> {
    ctx.update_spec::<SecurityGroup>(group, |s| {
        s.rules.push(rule.clone());
        Ok(())
    })
    .await?;
    print_rules(ctx, group).await
}

async fn delete_rule(ctx: &Ctx, group: &str, index: usize) -> Result<(), ClientError> {
    ctx.update_spec::<SecurityGroup>(group, |s| {
        if index < s.rules.len() {
            s.rules.remove(index);
            Ok(())
        } else {
            Err(ClientError::Usage(format!(
                "group {group} has no rule {index}; 'yunhan sg rule list {group}' shows them"
            )))
        }
    })
    .await?;
    print_rules(ctx, group).await
}

async fn print_rules(ctx: &Ctx, group: &str) -> Result<(), ClientError> {
    let v = ctx.fetch::<SecurityGroup>(group).await?;
    print_all(ctx.format, RULE_COLUMNS, &rule_rows(v.value.spec.rules));
    Ok(())
}

/// The numbered rules of a group.
fn rule_rows(rules: Vec<SecurityGroupRule>) -> Vec<Answer<RuleRow>> {
    (rules.into_iter().enumerate())
        .map(|(index, rule)| Answer::made(RuleRow { index, rule }))
        .collect()
}

/// The table of `rules`.
#[cfg(test)]
pub(crate) fn table_of(rules: Vec<SecurityGroupRule>) -> String {
    crate::output::table(RULE_COLUMNS, rule_rows(rules).iter().map(|r| &r.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports() {
        assert_eq!(parse_ports("22"), Ok((22, 22)));
        assert_eq!(parse_ports("8000-8080"), Ok((8000, 8080)));
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("90-80").is_err());
        assert!(parse_ports("http").is_err());
    }

    /// `sg rule list -o json` prints `{"index": i, "rule": <the rule as stored>}`.
    #[test]
    fn rule_rows_keep_the_rules_json() {
        let raw = serde_json::json!([
            {"direction": "ingress", "protocol": "tcp", "port_from": 80, "port_to": 80, "cidr": "0.0.0.0/0"},
            {"direction": "egress", "protocol": "icmp", "group": "sg-2"},
        ]);
        let rules = serde_json::from_value(raw.clone()).unwrap();
        let got: Vec<_> = rule_rows(rules).into_iter().map(|r| r.raw).collect();
        let want: Vec<_> = (raw.as_array().unwrap().iter().enumerate())
            .map(|(i, r)| serde_json::json!({"index": i, "rule": r}))
            .collect();
        assert_eq!(
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        );
    }
}
