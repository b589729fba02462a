//! The per-instance cloud-init NoCloud seed: `meta-data`, `network-config`
//! and `user-data`, packed as an ISO 9660 volume labelled `cidata`.

use std::path::Path;

/// The seed's files, as (name, contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    pub meta_data: String,
    pub network_config: String,
    pub user_data: String,
}

/// Quotes a YAML scalar (double-quoted style).
fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A VPC NIC's static configuration in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNic {
    pub mac: String,
    /// `10.10.1.5/24`
    pub address: String,
    pub gateway: String,
    pub mtu: u16,
}

/// The network-config (v2): DHCP on the user-mode NIC `mac` when there are no VPC NICs,
/// else each VPC NIC by MAC (`eth0`, `eth1`, … in order) with its static address and MTU;
/// the first one carries the default route.
fn network_config(mac: &str, nics: &[SeedNic]) -> String {
    if nics.is_empty() {
        return format!(
            "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: {}\n    set-name: eth0\n    dhcp4: true\n",
            yaml_str(mac)
        );
    }
    let mut s = String::from("version: 2\nethernets:\n");
    for (i, n) in nics.iter().enumerate() {
        s.push_str(&format!(
            "  eth{i}:\n    match:\n      macaddress: {}\n    set-name: eth{i}\n    dhcp4: false\n    addresses: [{}]\n    mtu: {}\n",
            yaml_str(&n.mac),
            yaml_str(&n.address),
            n.mtu
        ));
        if i == 0 {
            s.push_str(&format!("    gateway4: {}\n", yaml_str(&n.gateway)));
        }
    }
    s
}

/// The seed of an instance: its id and name, its network (see [`network_config`]), and
/// the user's user-data — or, without it, a `#cloud-config` carrying the SSH keys.
pub fn seed_files(
    instance_id: &str,
    hostname: &str,
    mac: &str,
    nics: &[SeedNic],
    user_data: Option<&str>,
    ssh_keys: &[String],
) -> SeedFiles {
    let meta_data = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(instance_id),
        yaml_str(hostname)
    );
    let network_config = network_config(mac, nics);
    let user_data = match user_data {
        Some(u) => u.to_string(),
        None => {
            let mut s = String::from("#cloud-config\n");
            if !ssh_keys.is_empty() {
                s.push_str("ssh_authorized_keys:\n");
                for k in ssh_keys {
                    s.push_str(&format!("  - {}\n", yaml_str(k.trim())));
                }
            }
            s
        }
    };
    SeedFiles {
        meta_data,
        network_config,
        user_data,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("writing the seed files in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("genisoimage: {0}")]
    Tool(String),
}

/// Writes `files` to `<dir>/seed/` and packs them into `out` with
/// `genisoimage` (Rock Ridge + Joliet names, volume id `cidata`).
pub async fn write_iso(files: &SeedFiles, dir: &Path, out: &Path) -> Result<(), SeedError> {
    let src = dir.join("seed");
    let io = |source| SeedError::Io {
        path: src.display().to_string(),
        source,
    };
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(io)?;
    for (name, body) in [
        ("meta-data", &files.meta_data),
        ("network-config", &files.network_config),
        ("user-data", &files.user_data),
    ] {
        std::fs::write(src.join(name), body).map_err(io)?;
    }
    let tmp = out.with_extension("iso.tmp");
    let output = tokio::process::Command::new("genisoimage")
        .arg("-quiet")
        .arg("-output")
        .arg(&tmp)
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .arg(&src)
        .output()
        .await
        .map_err(|e| SeedError::Tool(format!("cannot run it ({e}); run scripts/setup")))?;
    let _ = std::fs::remove_dir_all(&src);
    if !output.status.success() {
        return Err(SeedError::Tool(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    std::fs::rename(&tmp, out).map_err(|source| SeedError::Io {
        path: out.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_and_network() {
        let s = seed_files("ins-1", "web-1", "52:54:00:01:02:03", &[], None, &[]);
        assert_eq!(
            s.meta_data,
            "instance-id: \"ins-1\"\nlocal-hostname: \"web-1\"\n"
        );
        assert!(s.network_config.starts_with("version: 2\n"));
        assert!(s
            .network_config
            .contains("macaddress: \"52:54:00:01:02:03\""));
        assert!(s.network_config.contains("dhcp4: true"));
        assert_eq!(s.user_data, "#cloud-config\n");
    }

    #[test]
    fn ssh_keys_become_cloud_config() {
        let keys = vec![
            "ssh-ed25519 AAAA a@b".to_string(),
            "ssh-rsa BBBB".to_string(),
        ];
        let s = seed_files("ins-1", "web-1", "52:54:00:01:02:03", &[], None, &keys);
        assert_eq!(
            s.user_data,
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA a@b\"\n  - \"ssh-rsa BBBB\"\n"
        );
    }

    #[test]
    fn user_data_is_passed_verbatim() {
        let ud = "#!/bin/sh\necho hi\n";
        let s = seed_files("ins-1", "web-1", "m", &[], Some(ud), &["k".into()]);
        assert_eq!(s.user_data, ud);
    }

    #[test]
    fn vpc_nics_get_static_addresses_by_mac() {
        let nic = |mac: &str, addr: &str, gw: &str| SeedNic {
            mac: mac.into(),
            address: addr.into(),
            gateway: gw.into(),
            mtu: 1450,
        };
        let s = seed_files(
            "ins-1",
            "a",
            "52:54:00:01:02:03",
            &[
                nic("52:54:0a:0a:01:02", "10.10.1.2/24", "10.10.1.1"),
                nic("52:54:0a:0a:02:02", "10.10.2.2/24", "10.10.2.1"),
            ],
            None,
            &[],
        );
        assert_eq!(
            s.network_config,
            "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"52:54:0a:0a:01:02\"\n    set-name: eth0\n    dhcp4: false\n    addresses: [\"10.10.1.2/24\"]\n    mtu: 1450\n    gateway4: \"10.10.1.1\"\n  eth1:\n    match:\n      macaddress: \"52:54:0a:0a:02:02\"\n    set-name: eth1\n    dhcp4: false\n    addresses: [\"10.10.2.2/24\"]\n    mtu: 1450\n"
        );
        assert!(!s.network_config.contains("52:54:00:01:02:03"));
    }

    #[test]
    fn quoting() {
        assert_eq!(yaml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[tokio::test]
    async fn iso_has_the_cidata_label() {
        if std::process::Command::new("genisoimage")
            .arg("-version")
            .output()
            .is_err()
        {
            eprintln!("genisoimage missing: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let s = seed_files("ins-1", "web-1", "m", &[], None, &[]);
        let iso = d.path().join("seed.iso");
        write_iso(&s, d.path(), &iso).await.unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // Primary volume descriptor at 16*2048: type 1, "CD001", volume id at +40.
        let pvd = &bytes[16 * 2048..17 * 2048];
        assert_eq!(&pvd[1..6], b"CD001");
        assert_eq!(&pvd[40..46], b"cidata");
        assert!(!d.path().join("seed").exists());
    }
}
