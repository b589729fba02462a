//! Network compiler at data-centre scale: 100 hosts × 10,000 ports (400 VPCs of 25 ports,
//! two subnets and two security groups each, one of them referring to the other), plus one
//! large VPC variant. Compiles all plans and one host's plan; prints plan sizes (JSON bytes).
use criterion::{criterion_group, criterion_main, Criterion};
use std::net::Ipv4Addr;
use yunhan_net::addr::{Ipv4Cidr, MacAddr};
use yunhan_net::compile::{compile_all, compile_host, Index};
use yunhan_net::lab::fixtures;
use yunhan_net::model::*;

fn model(hosts: usize, vpcs: usize, per_vpc: usize) -> NetworkModel {
    let mut m = fixtures::hosts_model(hosts);
    for v in 0..vpcs {
        let vpc = format!("vpc{v}");
        m.vpcs.push(fixtures::vpc(&vpc, 1000 + v as u32));
        for s in 0..2u8 {
            let cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 0, s * 16, 0), 20).unwrap();
            let mac = MacAddr::from_key(&format!("{vpc}-s{s}-gw"));
            let id = format!("{vpc}-s{s}");
            m.subnets.push(fixtures::subnet_over(id, &vpc, cidr, mac));
        }
        m.security_groups
            .extend(fixtures::web_and_db(&vpc, (80, 443)));
        for i in 0..per_vpc {
            let s = (i % 2) as u8;
            let o = 10 + (i / 2) as u32;
            m.ports.push(Port {
                id: format!("{vpc}-p{i}"),
                vpc: vpc.clone(),
                subnet: format!("{vpc}-s{s}"),
                host: Some(format!("h{}", (v * 7 + i * 13) % hosts)),
                mac: MacAddr::from_key(&format!("{vpc}-p{i}")),
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, s * 16, 0)) + o),
                security_groups: vec![format!("{vpc}-{}", if i % 3 == 0 { "db" } else { "web" })],
            });
        }
    }
    m
}

/// The same model with everything external: one external network (legs on every host),
/// an elastic IP (capped) for every 10th port, a NAT gateway per VPC with one port-forward,
/// a VIP per VPC shared by its first two ports.
fn with_external(mut m: NetworkModel) -> NetworkModel {
    m.external_networks.push(ExternalNetwork {
        id: "ext".into(),
        cidr: "100.64.0.0/16".parse().unwrap(),
        gateway_ip: "100.64.0.1".parse().unwrap(),
        legs: m
            .hosts
            .iter()
            .map(|h| ExternalLeg {
                host: h.id.clone(),
                device: "ext0".into(),
            })
            .collect(),
        host_gateway: false,
    });
    let addr = |i: usize| Ipv4Addr::from(0x6440_0000u32 + 10 + i as u32);
    for (i, p) in m.ports.iter().enumerate().filter(|(i, _)| i % 10 == 0) {
        m.elastic_ips.push(ElasticIp {
            id: format!("eip{i}"),
            address: addr(i),
            port: Some(p.id.clone()),
            bandwidth_mbit: Some(100),
        });
    }
    let n = m.ports.len();
    for (v, vpc) in m.vpcs.iter().enumerate() {
        let ports: Vec<&Port> = m.ports.iter().filter(|p| p.vpc == vpc.id).collect();
        m.nat_gateways.push(NatGateway {
            id: format!("nat{v}"),
            vpc: vpc.id.clone(),
            external_ip: addr(n + v),
            subnets: vec![],
            dnat: vec![DnatRule {
                protocol: Protocol::Tcp,
                external_port: 8080,
                internal_ip: ports[1].ip,
                internal_port: 80,
            }],
            host: m.hosts[v % m.hosts.len()].id.clone(),
        });
        m.vips.push(Vip {
            id: format!("vip{v}"),
            vpc: vpc.id.clone(),
            subnet: ports[0].subnet.clone(),
            ip: Ipv4Addr::from(u32::from(ports[0].ip) + 3000),
            mac: None,
            ports: vec![ports[0].id.clone(), ports[2].id.clone()],
            holder: Some(ports[0].id.clone()),
        });
    }
    m
}

fn sizes(label: &str, m: &NetworkModel) {
    let plans = compile_all(m).unwrap();
    let mut bytes: Vec<usize> = plans
        .values()
        .map(|p| serde_json::to_vec(p).unwrap().len())
        .collect();
    bytes.sort();
    let total: usize = bytes.iter().sum();
    let ports: Vec<usize> = plans.values().map(|p| p.ports.len()).collect();
    println!(
        "plan size {label}: hosts={} ports={} local ports/host avg={:.0} max={} | JSON bytes/host min={} median={} max={} avg={:.0} total={}",
        plans.len(),
        m.ports.len(),
        ports.iter().sum::<usize>() as f64 / ports.len() as f64,
        ports.iter().max().unwrap(),
        bytes[0],
        bytes[bytes.len() / 2],
        bytes[bytes.len() - 1],
        total as f64 / bytes.len() as f64,
        total
    );
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("net_compile");
    g.sample_size(10);
    for (label, m) in [
        ("100h_10k_ports_400vpcs", model(100, 400, 25)),
        ("100h_10k_ports_10vpcs", model(100, 10, 1000)),
        (
            "100h_10k_ports_400vpcs_external",
            with_external(model(100, 400, 25)),
        ),
    ] {
        sizes(label, &m);
        g.bench_function(format!("{label}/all_hosts"), |b| {
            b.iter(|| compile_all(&m).unwrap())
        });
        g.bench_function(format!("{label}/one_host"), |b| {
            b.iter(|| compile_host(&m, "h42").unwrap())
        });
        let ix = Index::new(&m).unwrap();
        let h = m.hosts[42].clone();
        g.bench_function(format!("{label}/one_host_indexed"), |b| {
            b.iter(|| ix.host_plan(&h))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
