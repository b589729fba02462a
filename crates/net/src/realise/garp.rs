//! Gratuitous ARP: when an external address starts being answered (proxy ARP) on this
//! host, the outside is told at once instead of waiting for its ARP cache to go stale
//! (an elastic IP or a NAT gateway that moved here from a lost host). A gratuitous ARP
//! request (sender = target = the address, from the device's MAC) updates every existing
//! cache entry for the address on the segment; nothing new is created (`arp_accept=0`).
use crate::addr::MacAddr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;

/// How long a host keeps announcing an external address it started answering for (once
/// per apply, i.e. every 2 s in the agent): another host that still answers for it (cut
/// off, its agent stopped) may win a client's fresh ARP lookup; the next announcement
/// corrects that client.
pub const ANNOUNCE_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The Ethernet frame of a gratuitous ARP request for `addr` from `mac` (42 bytes).
pub fn frame(mac: MacAddr, addr: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend([0xff; 6]); // broadcast
    f.extend(mac.0);
    f.extend(ETH_P_ARP.to_be_bytes());
    f.extend([0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend(mac.0);
    f.extend(addr.octets());
    f.extend([0; 6]);
    f.extend(addr.octets());
    f
}

/// Sends [`frame`] out of `dev` in network namespace `netns` (None: the current one), on
/// a thread of its own that enters the namespace.
pub fn announce(netns: Option<&str>, dev: &str, mac: MacAddr, addr: Ipv4Addr) -> io::Result<()> {
    let ns = netns.map(|n| format!("/run/netns/{n}"));
    let dev = dev.to_string();
    std::thread::spawn(move || {
        if let Some(path) = ns {
            let fd = std::fs::File::open(&path)?;
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("setns {path}: {e}")))?;
        }
        send(&dev, &frame(mac, addr))
    })
    .join()
    .map_err(|_| io::Error::other("the gratuitous ARP thread panicked"))?
}

/// One raw frame out of `dev` (AF_PACKET).
#[allow(unsafe_code)] // socket(2)/sendto(2) on AF_PACKET: no safe wrapper in our dependencies
fn send(dev: &str, frame: &[u8]) -> io::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(dev).map_err(io::Error::from)?;
    let proto = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = proto;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and the address are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_request_names_the_address_twice_from_our_mac() {
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x2a]);
        let f = frame(mac, Ipv4Addr::new(203, 0, 113, 60));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac.0);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &mac.0, "sender MAC");
        assert_eq!(&f[28..32], &[203, 0, 113, 60], "sender IP");
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[203, 0, 113, 60], "target IP = sender IP");
    }
}
