//! Address claims: an address in a subnet (NICs, VIPs) or an external network
//! is held by a claim key created with compare-and-swap, so two concurrent
//! creates never get the same address.

use std::net::Ipv4Addr;

use yunhan_model::network::{ip_claim_key, parse_cidr, parse_ip, IP_CLAIM_PREFIX};
use yunhan_model::{ApiError, ErrorCode, Subnet};
use yunhan_store::objects::Doc;
use yunhan_store::StoreExt;
use yunhan_types::ipam::{Ipam, IpamError};
use yunhan_types::Ipv4Cidr;

use crate::error::Result;
use crate::AppState;

/// Where addresses are claimed: `cidr` (its gateway reserved) under the claim keys
/// `key(ip)` listed under `prefix`; `range`, when set, the only addresses handed out.
pub(crate) struct Space<'a, K> {
    pub prefix: &'a str,
    pub key: K,
    pub cidr: Ipv4Cidr,
    pub gateway: Ipv4Addr,
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl<K> Space<'_, K> {
    /// Host addresses of the CIDR outside the range (taken, as far as allocation goes).
    fn outside_range(&self) -> Vec<Ipv4Addr> {
        let Some((first, last)) = self.range else {
            return Vec::new();
        };
        let (lo, hi) = (
            u32::from(self.cidr.network()),
            u32::from(self.cidr.broadcast()),
        );
        (lo + 1..hi)
            .map(Ipv4Addr::from)
            .filter(|ip| *ip < first || *ip > last)
            .filter(|ip| *ip != self.gateway)
            .collect()
    }
}

/// Claims an address in `space`: a fixed one, or the next free one. Claims are created
/// with compare-and-swap, so two concurrent creates never get the same address.
pub(crate) async fn claim_address<K: Fn(Ipv4Addr) -> String>(
    s: &AppState,
    space: &Space<'_, K>,
    fixed: Option<(Ipv4Addr, &str)>,
    owner: &str,
) -> Result<Ipv4Addr> {
    let (cidr, store) = (space.cidr, s.objects.store());
    let outside = space.outside_range();
    if let (Some((ip, field)), Some((first, last))) = (fixed, space.range) {
        if ip < first || ip > last {
            return Err(ApiError::invalid_field(
                field,
                format!("{ip} is outside the range handed out, {first}-{last}"),
            )
            .into());
        }
    }
    for _ in 0..50 {
        let used: Vec<Ipv4Addr> = store
            .range_all(space.prefix)
            .await?
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
            .filter(|ip| cidr.contains(*ip))
            .chain(outside.iter().copied())
            .collect();
        let mut ipam = Ipam::with_used(cidr, Some(space.gateway), used.iter().copied())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let ip = pick(&mut ipam, cidr, fixed)?;
        if store
            .create(&(space.key)(ip), owner.as_bytes().to_vec())
            .await?
        {
            return Ok(ip);
        }
        // Someone claimed it between our read and write: read again.
    }
    Err(ApiError::new(
        ErrorCode::Unavailable,
        "address allocation kept racing; retry",
    )
    .into())
}

/// `fixed` if it is free, else the next free address of `cidr`.
fn pick(ipam: &mut Ipam, cidr: Ipv4Cidr, fixed: Option<(Ipv4Addr, &str)>) -> Result<Ipv4Addr> {
    let Some((ip, field)) = fixed else {
        return Ok(ipam.allocate().map_err(|_| {
            ApiError::new(
                ErrorCode::IpExhausted,
                format!(
                    "{cidr} has no free address left; delete unused NICs or use another subnet"
                ),
            )
            .with_detail("cidr", cidr.to_string())
        })?);
    };
    match ipam.allocate_fixed(ip) {
        Ok(()) => Ok(ip),
        Err(IpamError::Taken(_)) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{ip} is already in use in {cidr}; pick another address or omit it"),
        )
        .with_detail("field", field)
        .into()),
        Err(e) => Err(ApiError::invalid_field(
            field,
            format!("{e}; use a free host address of {cidr}"),
        )
        .into()),
    }
}

/// The address a request asks for in `field`, parsed, with that field's name.
pub(crate) fn fixed_address<'f>(
    field: &'f str,
    asked: Option<&str>,
) -> Result<Option<(Ipv4Addr, &'f str)>> {
    match asked {
        Some(a) => Ok(Some((parse_ip(field, a)?, field))),
        None => Ok(None),
    }
}

/// 409 on `spec.cidr` when `cidr` overlaps one of `others` (name, range);
/// `why` words it from that one's name and range.
pub(crate) fn refuse_overlap<'a>(
    cidr: Ipv4Cidr,
    others: impl IntoIterator<Item = (&'a str, &'a str)>,
    why: impl FnOnce(&str, &str) -> String,
) -> Result<()> {
    let mut others = others.into_iter();
    match others.find(|(_, c)| c.parse::<Ipv4Cidr>().is_ok_and(|c| c.overlaps(&cidr))) {
        Some((name, other)) => Err(ApiError::new(ErrorCode::Conflict, why(name, other))
            .with_detail("field", "spec.cidr")
            .into()),
        None => Ok(()),
    }
}

/// Subnet facts needed to place an address in it.
pub(crate) struct SubnetInfo {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    pub gateway: Ipv4Addr,
}

pub(crate) fn subnet_info(d: &Doc<Subnet>) -> Result<SubnetInfo> {
    let cidr = parse_cidr("spec.cidr", &d.spec.cidr)?;
    Ok(SubnetInfo {
        id: d.metadata.id.clone(),
        vpc: d.spec.vpc.clone(),
        cidr,
        gateway: Ipam::default_gateway(cidr),
    })
}

/// Claims an address in subnet `sn` for `owner`: `fixed` (checked as `field`) or the next free one.
pub(crate) async fn claim_in_subnet(
    s: &AppState,
    sn: &SubnetInfo,
    fixed: Option<&str>,
    field: &str,
    owner: &str,
) -> Result<Ipv4Addr> {
    let fixed = fixed_address(field, fixed)?;
    let prefix = format!("{IP_CLAIM_PREFIX}{}/", sn.id);
    let space = Space {
        prefix: &prefix,
        key: |ip| ip_claim_key(&sn.id, ip),
        cidr: sn.cidr,
        gateway: sn.gateway,
        range: None,
    };
    claim_address(s, &space, fixed, owner).await
}
