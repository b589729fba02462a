//! `yunhan vpc|subnet|nic|sg|eip|eip-pool|natgw|vip …`: VPC networking.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::ClientError;
use crate::commands::{path_segment, resource_command, Ctx, Kind, Verb};
use crate::output::{print, text, Column};

macro_rules! col {
    ($header:literal, $a:literal, $b:literal) => {
        Column {
            header: $header,
            get: |v| text(&v[$a][$b]),
        }
    };
}

const VPCS: Kind = Kind {
    plural: "vpcs",
    singular: "VPC",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("CIDR", "spec", "cidr"),
        col!("VNI", "status", "vni"),
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const SUBNETS: Kind = Kind {
    plural: "subnets",
    singular: "subnet",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("CIDR", "spec", "cidr"),
        col!("GATEWAY", "status", "gateway_ip"),
        col!("VPC", "spec", "vpc"),
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const NICS: Kind = Kind {
    plural: "network-interfaces",
    singular: "NIC",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("IP", "status", "ip"),
        col!("MAC", "status", "mac"),
        col!("SUBNET", "spec", "subnet"),
        col!("INSTANCE", "spec", "instance"),
        Column {
            header: "GROUPS",
            get: |v| join(&v["spec"]["security_groups"]),
        },
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const GROUPS: Kind = Kind {
    plural: "security-groups",
    singular: "security group",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("VPC", "spec", "vpc"),
        Column {
            header: "RULES",
            get: |v| {
                v["spec"]["rules"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string()
            },
        },
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const POOLS: Kind = Kind {
    plural: "eip-pools",
    singular: "elastic IP pool",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("CIDR", "spec", "cidr"),
        col!("GATEWAY", "spec", "gateway"),
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const EIPS: Kind = Kind {
    plural: "elastic-ips",
    singular: "elastic IP",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("ADDRESS", "status", "address"),
        col!("NIC", "spec", "nic"),
        col!("BANDWIDTH_MBIT", "spec", "bandwidth_mbit"),
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const NATGWS: Kind = Kind {
    plural: "nat-gateways",
    singular: "NAT gateway",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("VPC", "spec", "vpc"),
        col!("ELASTIC_IP", "spec", "elastic_ip"),
        Column {
            header: "SUBNETS",
            get: |v| join(&v["spec"]["subnets"]),
        },
        Column {
            header: "DNAT",
            get: |v| v["spec"]["dnat"].as_array().map_or(0, Vec::len).to_string(),
        },
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const VIPS: Kind = Kind {
    plural: "vips",
    singular: "VIP",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("IP", "status", "ip"),
        col!("SUBNET", "spec", "subnet"),
        Column {
            header: "NICS",
            get: |v| join(&v["spec"]["nics"]),
        },
        col!("PHASE", "status", "phase"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const RULE_COLUMNS: &[Column] = &[
    Column {
        header: "#",
        get: |v| text(&v["index"]),
    },
    col!("DIRECTION", "rule", "direction"),
    col!("PROTOCOL", "rule", "protocol"),
    Column {
        header: "PORTS",
        get: |v| match (
            v["rule"]["port_from"].as_u64(),
            v["rule"]["port_to"].as_u64(),
        ) {
            (Some(f), Some(t)) if f != t => format!("{f}-{t}"),
            (Some(f), _) => f.to_string(),
            _ => "all".into(),
        },
    },
    Column {
        header: "PEER",
        get: |v| match (&v["rule"]["cidr"], &v["rule"]["group"]) {
            (_, Value::String(g)) => format!("group {g}"),
            (Value::String(c), _) => c.clone(),
            _ => "0.0.0.0/0".into(),
        },
    },
];

fn join(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(","),
        _ => "-".into(),
    }
}

#[derive(Args, Debug, Clone)]
pub struct VpcCreate {
    pub name: String,
    /// The VPC's range, e.g. 10.10.0.0/16
    #[arg(long)]
    pub cidr: String,
}

#[derive(Args, Debug, Clone)]
pub struct SubnetCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
    /// A range inside the VPC's, not overlapping its other subnets, e.g. 10.10.1.0/24
    #[arg(long)]
    pub cidr: String,
}

#[derive(Args, Debug, Clone)]
pub struct NicCreate {
    pub name: String,
    /// The subnet (name or id)
    #[arg(long)]
    pub subnet: String,
    /// A fixed address in the subnet [default: the next free one]
    #[arg(long)]
    pub ip: Option<String>,
    /// A security group of the same VPC (repeatable) [default: the VPC's default group]
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// Attach it to this VM at once
    #[arg(long)]
    pub vm: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SgCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
}

#[derive(Args, Debug, Clone)]
pub struct PoolCreate {
    pub name: String,
    /// External addresses to hand out, e.g. 203.0.113.0/24
    #[arg(long)]
    pub cidr: String,
    /// The external gateway (not handed out) [default: the first address]
    #[arg(long)]
    pub gateway: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct EipCreate {
    pub name: String,
    /// The pool (name or id) [default: the first pool]
    #[arg(long)]
    pub pool: Option<String>,
    /// A specific address of the pool
    #[arg(long)]
    pub address: Option<String>,
    /// Bandwidth cap in Mbit/s [default: none]
    #[arg(long, value_name = "MBIT")]
    pub bandwidth: Option<u32>,
    /// Bind it to this NIC at once
    #[arg(long)]
    pub nic: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct NatgwCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
    /// The elastic IP to translate to (not bound to a NIC)
    #[arg(long)]
    pub eip: String,
    /// Only these subnets (repeatable) [default: the whole VPC]
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Port forward PROTO:PORT:IP:PORT, e.g. tcp:8080:10.10.1.5:80 (repeatable)
    #[arg(long = "dnat", value_parser = parse_dnat)]
    pub dnat: Vec<Value>,
}

#[derive(Args, Debug, Clone)]
pub struct VipCreate {
    pub name: String,
    /// The subnet (name or id)
    #[arg(long)]
    pub subnet: String,
    /// A fixed address in the subnet [default: the next free one]
    #[arg(long)]
    pub ip: Option<String>,
    /// A NIC allowed to announce it (repeatable)
    #[arg(long = "nic")]
    pub nics: Vec<String>,
}

fn parse_dnat(s: &str) -> Result<Value, String> {
    let bad = || format!("{s:?} is not PROTO:PORT:IP:PORT, e.g. tcp:8080:10.10.1.5:80");
    let p: Vec<&str> = s.split(':').collect();
    let [proto, port, ip, to_port] = p[..] else {
        return Err(bad());
    };
    if !matches!(proto, "tcp" | "udp") {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    let to_port: u16 = to_port.parse().map_err(|_| bad())?;
    Ok(json!({"protocol": proto, "port": port, "to_ip": ip, "to_port": to_port}))
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

resource_command!(
    /// VPCs: isolated private networks spanning hosts (one VXLAN segment each)
    ///
    /// Example:
    ///   yunhan vpc create net1 --cidr 10.10.0.0/16
    ///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
    ///   yunhan vm create a --image tiny --flavor tiny --subnet s1 --wait
    #[command(verbatim_doc_comment)]
    VpcCommand, VpcCreate);
resource_command!(
    /// Subnets of a VPC; the first address is the gateway (a distributed router)
    ///
    /// Example:
    ///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
    #[command(verbatim_doc_comment)]
    SubnetCommand, SubnetCreate);
resource_command!(
    /// Network interfaces (elastic NICs): an address in a subnet, security groups, a VM
    ///
    /// Example:
    ///   yunhan nic create db-nic --subnet s1 --ip 10.10.1.50 --security-group db
    ///   yunhan nic attach db-nic --vm db1
    ///   yunhan nic detach db-nic
    #[command(verbatim_doc_comment)]
    NicCommand, NicCreate, {
    /// Attach a NIC to a VM (or move it to another one)
    Attach {
        name: String,
        /// The VM (name or id)
        #[arg(long)]
        vm: String,
    },
    /// Detach a NIC from its VM
    Detach { name: String },
    /// Replace a NIC's security groups
    SetGroups {
        name: String,
        /// A security group (repeatable; none: the VPC's default group)
        #[arg(long = "security-group", value_name = "GROUP")]
        security_groups: Vec<String>,
    },
});
resource_command!(
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
    #[command(verbatim_doc_comment)]
    SgCommand, SgCreate, {
    /// Rules of a security group
    #[command(subcommand)]
    Rule(RuleCommand),
});
resource_command!(
    /// Elastic IP pools: external address ranges (admin)
    ///
    /// Example:
    ///   yunhan eip-pool create public --cidr 203.0.113.0/24
    #[command(verbatim_doc_comment)]
    PoolCommand, PoolCreate);
resource_command!(
    /// Elastic IPs: external addresses bound 1:1 to a NIC, with a bandwidth cap
    ///
    /// Example:
    ///   yunhan eip create web-ip --bandwidth 100
    ///   yunhan eip bind web-ip --nic a-nic0
    ///   yunhan eip unbind web-ip
    #[command(verbatim_doc_comment)]
    EipCommand, EipCreate, {
    /// Bind an elastic IP to a NIC
    Bind {
        name: String,
        #[arg(long)]
        nic: String,
    },
    /// Unbind an elastic IP from its NIC
    Unbind { name: String },
});
resource_command!(
    /// NAT gateways: SNAT a VPC (or some subnets) behind an elastic IP, plus port forwards
    ///
    /// Example:
    ///   yunhan natgw create gw --vpc net1 --eip gw-ip --dnat tcp:8080:10.10.1.5:80
    #[command(verbatim_doc_comment)]
    NatgwCommand, NatgwCreate);
resource_command!(
    /// Virtual IPs that several NICs of a subnet may announce (keepalived-style failover)
    ///
    /// Example:
    ///   yunhan vip create db-vip --subnet s1 --nic db1-nic0 --nic db2-nic0
    #[command(verbatim_doc_comment)]
    VipCommand, VipCreate);

#[derive(Subcommand, Debug, Clone)]
pub enum RuleCommand {
    /// List a group's rules with their numbers
    #[command(alias = "ls")]
    List { group: String },
    /// Add an allow rule
    Add {
        group: String,
        #[arg(long, value_parser = ["ingress", "egress"], default_value = "ingress")]
        direction: String,
        #[arg(long, value_parser = ["any", "tcp", "udp", "icmp"], default_value = "any")]
        protocol: String,
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

/// The networking commands (flattened into the top level).
#[derive(Subcommand, Debug, Clone)]
pub enum NetworkCommand {
    #[command(subcommand)]
    Vpc(VpcCommand),
    #[command(subcommand)]
    Subnet(SubnetCommand),
    #[command(subcommand)]
    Nic(NicCommand),
    #[command(subcommand, name = "sg", alias = "security-group")]
    Sg(SgCommand),
    #[command(subcommand, name = "eip-pool")]
    Pool(PoolCommand),
    #[command(subcommand, name = "eip", alias = "elastic-ip")]
    Eip(EipCommand),
    #[command(subcommand, name = "natgw", alias = "nat-gateway")]
    Natgw(NatgwCommand),
    #[command(subcommand)]
    Vip(VipCommand),
}

impl Ctx {
    async fn create_print(&self, k: &Kind, name: &str, spec: Value) -> Result<(), ClientError> {
        let v = self
            .create(k, json!({"metadata": {"name": name}, "spec": spec}))
            .await?;
        print(self.format, k.columns, &v);
        Ok(())
    }

    async fn print_rules(&self, group: &str) -> Result<(), ClientError> {
        let v = self
            .client
            .get(&format!("/v1/security-groups/{}", path_segment(group)))
            .await?;
        let rows: Vec<Value> = v["spec"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| json!({"index": i, "rule": r}))
            .collect();
        print(self.format, RULE_COLUMNS, &Value::Array(rows));
        Ok(())
    }
}

/// Sets `spec[key]` to `value` (or removes it for null).
pub(crate) fn set(spec: &mut Value, key: &str, value: Value) {
    if let Some(o) = spec.as_object_mut() {
        if value.is_null() {
            o.remove(key);
        } else {
            o.insert(key.into(), value);
        }
    }
}

/// Runs a networking command.
pub(crate) async fn run(ctx: &Ctx, cmd: NetworkCommand) -> Result<(), ClientError> {
    match cmd {
        NetworkCommand::Vpc(c) => match c.verb() {
            Ok(v) => ctx.verb(&VPCS, v).await,
            Err(VpcCommand::Create(a)) => {
                ctx.create_print(&VPCS, &a.name, json!({"cidr": a.cidr}))
                    .await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Subnet(c) => match c.verb() {
            Ok(v) => ctx.verb(&SUBNETS, v).await,
            Err(SubnetCommand::Create(a)) => {
                let spec = json!({"vpc": a.vpc, "cidr": a.cidr});
                ctx.create_print(&SUBNETS, &a.name, spec).await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Nic(c) => match c.verb() {
            Ok(v) => ctx.verb(&NICS, v).await,
            Err(NicCommand::Create(a)) => {
                let mut spec = json!({"subnet": a.subnet, "security_groups": a.security_groups});
                set(&mut spec, "ip", json!(a.ip));
                set(&mut spec, "instance", json!(a.vm));
                ctx.create_print(&NICS, &a.name, spec).await
            }
            Err(NicCommand::Attach { name, vm }) => {
                let v = ctx
                    .update_spec(&NICS, &name, |s| {
                        set(s, "instance", json!(vm));
                        Ok(())
                    })
                    .await?;
                print(ctx.format, NICS.columns, &v);
                Ok(())
            }
            Err(NicCommand::Detach { name }) => {
                let v = ctx
                    .update_spec(&NICS, &name, |s| {
                        set(s, "instance", Value::Null);
                        Ok(())
                    })
                    .await?;
                print(ctx.format, NICS.columns, &v);
                Ok(())
            }
            Err(NicCommand::SetGroups {
                name,
                security_groups,
            }) => {
                let v = ctx
                    .update_spec(&NICS, &name, |s| {
                        set(s, "security_groups", json!(security_groups));
                        Ok(())
                    })
                    .await?;
                print(ctx.format, NICS.columns, &v);
                Ok(())
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Sg(c) => match c.verb() {
            Ok(v) => ctx.verb(&GROUPS, v).await,
            Err(SgCommand::Create(a)) => {
                let spec = json!({"vpc": a.vpc, "rules": []});
                ctx.create_print(&GROUPS, &a.name, spec).await
            }
            Err(SgCommand::Rule(RuleCommand::List { group })) => ctx.print_rules(&group).await,
            Err(SgCommand::Rule(RuleCommand::Add {
                group,
                direction,
                protocol,
                port,
                cidr,
                peer_group,
            })) => {
                let mut rule = json!({"direction": direction, "protocol": protocol});
                if let Some((from, to)) = port {
                    set(&mut rule, "port_from", json!(from));
                    set(&mut rule, "port_to", json!(to));
                }
                set(&mut rule, "cidr", json!(cidr));
                set(&mut rule, "group", json!(peer_group));
                ctx.update_spec(&GROUPS, &group, |s| {
                    match s["rules"].as_array_mut() {
                        Some(r) => r.push(rule.clone()),
                        None => s["rules"] = json!([rule]),
                    }
                    Ok(())
                })
                .await?;
                ctx.print_rules(&group).await
            }
            Err(SgCommand::Rule(RuleCommand::Delete { group, index })) => {
                ctx.update_spec(&GROUPS, &group, |s| match s["rules"].as_array_mut() {
                    Some(r) if index < r.len() => {
                        r.remove(index);
                        Ok(())
                    }
                    _ => Err(ClientError::Usage(format!(
                        "group {group} has no rule {index}; 'yunhan sg rule list {group}' shows them"
                    ))),
                })
                .await?;
                ctx.print_rules(&group).await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Pool(c) => match c.verb() {
            Ok(v) => ctx.verb(&POOLS, v).await,
            Err(PoolCommand::Create(a)) => {
                let mut spec = json!({"cidr": a.cidr});
                set(&mut spec, "gateway", json!(a.gateway));
                ctx.create_print(&POOLS, &a.name, spec).await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Eip(c) => match c.verb() {
            Ok(v) => ctx.verb(&EIPS, v).await,
            Err(EipCommand::Create(a)) => {
                let mut spec = json!({});
                set(&mut spec, "pool", json!(a.pool));
                set(&mut spec, "address", json!(a.address));
                set(&mut spec, "bandwidth_mbit", json!(a.bandwidth));
                set(&mut spec, "nic", json!(a.nic));
                ctx.create_print(&EIPS, &a.name, spec).await
            }
            Err(EipCommand::Bind { name, nic }) => {
                let v = ctx
                    .update_spec(&EIPS, &name, |s| {
                        set(s, "nic", json!(nic));
                        Ok(())
                    })
                    .await?;
                print(ctx.format, EIPS.columns, &v);
                Ok(())
            }
            Err(EipCommand::Unbind { name }) => {
                let v = ctx
                    .update_spec(&EIPS, &name, |s| {
                        set(s, "nic", Value::Null);
                        Ok(())
                    })
                    .await?;
                print(ctx.format, EIPS.columns, &v);
                Ok(())
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Natgw(c) => match c.verb() {
            Ok(v) => ctx.verb(&NATGWS, v).await,
            Err(NatgwCommand::Create(a)) => {
                let spec = json!({"vpc": a.vpc, "elastic_ip": a.eip, "subnets": a.subnets, "dnat": a.dnat});
                ctx.create_print(&NATGWS, &a.name, spec).await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        NetworkCommand::Vip(c) => match c.verb() {
            Ok(v) => ctx.verb(&VIPS, v).await,
            Err(VipCommand::Create(a)) => {
                let mut spec = json!({"subnet": a.subnet, "nics": a.nics});
                set(&mut spec, "ip", json!(a.ip));
                ctx.create_print(&VIPS, &a.name, spec).await
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_dnat() {
        assert_eq!(parse_ports("22"), Ok((22, 22)));
        assert_eq!(parse_ports("8000-8080"), Ok((8000, 8080)));
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("90-80").is_err());
        assert!(parse_ports("http").is_err());
        assert_eq!(
            parse_dnat("tcp:8080:10.10.1.5:80").unwrap(),
            json!({"protocol": "tcp", "port": 8080, "to_ip": "10.10.1.5", "to_port": 80})
        );
        assert!(parse_dnat("icmp:1:10.0.0.1:1").is_err());
        assert!(parse_dnat("tcp:80").is_err());
    }

    #[test]
    fn eip_show_has_the_phase_and_why() {
        let bad = json!({
            "metadata": {"name": "e1", "id": "eip-1"},
            "spec": {"nic": "nic-1"},
            "status": {"address": "198.51.100.2", "pool": "eipp-1", "phase": "Failed",
                       "message": "198.51.100.2 is in no external network"},
        });
        let out = crate::output::table(EIPS.columns, &[bad]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "ADDRESS",
                "NIC",
                "BANDWIDTH_MBIT",
                "PHASE",
                "ID",
                "MESSAGE"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.contains("Failed"), "{row}");
        assert!(
            row.ends_with("198.51.100.2 is in no external network"),
            "{row}"
        );
        for k in [&NATGWS, &VIPS, &NICS, &GROUPS] {
            assert!(
                k.columns.iter().any(|c| c.header == "PHASE"),
                "{}",
                k.plural
            );
            assert!(
                k.columns.iter().any(|c| c.header == "MESSAGE"),
                "{}",
                k.plural
            );
        }
    }
}
