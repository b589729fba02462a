//! `yunhan natgw …` (`nat-gateway`): SNAT behind an elastic IP, plus port forwards.

use clap::Args;
use yunhan_model::network::{DnatProtocol, DnatRule, NatGateway, NatGatewaySpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, join, with_phase, Column};

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
    pub dnat: Vec<DnatRule>,
}

/// `PROTO:PORT:IP:PORT`, e.g. `tcp:8080:10.10.1.5:80`.
fn parse_dnat(s: &str) -> Result<DnatRule, String> {
    let bad = || format!("{s:?} is not PROTO:PORT:IP:PORT, e.g. tcp:8080:10.10.1.5:80");
    let p: Vec<&str> = s.split(':').collect();
    let [proto, port, ip, to_port] = p[..] else {
        return Err(bad());
    };
    let protocol = match proto {
        "tcp" => DnatProtocol::Tcp,
        "udp" => DnatProtocol::Udp,
        _ => return Err(bad()),
    };
    Ok(DnatRule {
        protocol,
        port: port.parse().map_err(|_| bad())?,
        to_ip: ip.to_string(),
        to_port: to_port.parse().map_err(|_| bad())?,
    })
}

impl Shown for NatGateway {
    const NOUN: &'static str = "NAT gateway";
    const COLUMNS: &'static [Column<Doc<NatGateway>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("VPC", spec.vpc),
        col!("ELASTIC_IP", spec.elastic_ip),
        Column {
            header: "SUBNETS",
            get: |v| join(&v.spec.subnets),
        },
        Column {
            header: "DNAT",
            get: |v| v.spec.dnat.len().to_string(),
        },
        col!("HOST", status.host),
    ];
}

impl Create for NatgwCreate {
    type Kind = NatGateway;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = NatGatewaySpec {
            vpc: self.vpc,
            subnets: self.subnets,
            elastic_ip: self.eip,
            dnat: self.dnat,
        };
        ctx.create_print::<NatGateway>(&self.name, spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnat() {
        let rule = DnatRule {
            protocol: DnatProtocol::Tcp,
            port: 8080,
            to_ip: "10.10.1.5".into(),
            to_port: 80,
        };
        assert_eq!(parse_dnat("tcp:8080:10.10.1.5:80"), Ok(rule));
        assert!(parse_dnat("icmp:1:10.0.0.1:1").is_err());
        assert!(parse_dnat("tcp:80").is_err());
    }
}
