//! Network compiler at data-centre scale: 100 hosts × 10,000 ports (400 VPCs of 25 ports,
//! two subnets and two security groups each, one of them referring to the other), plus one
//! large VPC variant. Compiles all plans and one host's plan; prints plan sizes (JSON bytes).
use criterion::{criterion_group, criterion_main, Criterion};
use std::net::Ipv4Addr;
use yunhan_net::addr::{Ipv4Cidr, MacAddr};
use yunhan_net::compile::{compile_all, compile_host, Index};
use yunhan_net::model::*;

fn model(hosts: usize, vpcs: usize, per_vpc: usize) -> NetworkModel {
    let mut m = NetworkModel {
        underlay_mtu: 1500,
        ..Default::default()
    };
    for h in 0..hosts {
        m.hosts.push(Host {
            id: format!("h{h}"),
            vtep: Ipv4Addr::from(0xc000_0200u32 + 10 + h as u32),
        });
    }
    for v in 0..vpcs {
        let vpc = format!("vpc{v}");
        m.vpcs.push(Vpc {
            id: vpc.clone(),
            vni: 1000 + v as u32,
            cidr: "10.0.0.0/16".parse().unwrap(),
        });
        for s in 0..2u8 {
            m.subnets.push(Subnet {
                id: format!("{vpc}-s{s}"),
                vpc: vpc.clone(),
                cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 0, s * 16, 0), 20).unwrap(),
                gateway_ip: Ipv4Addr::new(10, 0, s * 16, 1),
                gateway_mac: MacAddr::from_key(&format!("{vpc}-s{s}-gw")),
            });
        }
        m.security_groups.push(SecurityGroup {
            id: format!("{vpc}-web"),
            vpc: vpc.clone(),
            rules: vec![Rule {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: Some(PortRange { from: 80, to: 443 }),
                peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
            }],
        });
        m.security_groups.push(SecurityGroup {
            id: format!("{vpc}-db"),
            vpc: vpc.clone(),
            rules: vec![Rule {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: Some(PortRange {
                    from: 5432,
                    to: 5432,
                }),
                peer: Peer::Group(format!("{vpc}-web")),
            }],
        });
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
