//! The QEMU command line, as a pure function of a [`VmPlan`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// What the VM boots from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Boot {
    /// The root disk, through the firmware (SeaBIOS).
    Disk,
    /// Direct kernel boot (the per-VM copies of the image's kernel and initrd).
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
}

/// Everything the command line depends on. Paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPlan {
    pub instance_id: String,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub accel: Accelerator,
    /// The VM directory: disk, seed, sockets, logs, pidfile live here.
    pub dir: PathBuf,
    pub boot: Boot,
    /// The NIC's MAC address.
    pub mac: String,
    /// Host PCI addresses passed through with VFIO.
    pub gpus: Vec<String>,
    /// The root disk's `-blockdev` nodes (protocol, then raw format node
    /// `root`) when the VM boots from a volume; None: `disk.raw` in `dir`.
    #[serde(default)]
    pub root: Option<[serde_json::Value; 2]>,
    /// VPC NICs (TAP file descriptors inherited by QEMU). None: the user-mode NIC.
    #[serde(default)]
    pub nics: Vec<VmNic>,
    /// Volumes hot-plugged into the VM before it came here (a live migration's
    /// target starts with them on their ports).
    #[serde(default)]
    pub volumes: Vec<VmVolume>,
    /// A live migration's target: QEMU waits for the VM's state on this
    /// address (`tcp:host:port`) instead of booting.
    #[serde(default)]
    pub incoming: Option<String>,
}

/// A VPC NIC of a VM: a TAP device the agent opened, passed to QEMU by descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNic {
    /// The NetworkInterface id (also the QEMU device id, for hot unplug).
    pub id: String,
    pub mac: String,
    /// The TAP device in the host's network namespace.
    pub device: String,
    /// Its descriptor number in QEMU (inherited across exec).
    pub fd: i32,
    pub mtu: u16,
    /// The hot-plug port it was plugged into (a live migration's target);
    /// None: the root bus, as at start.
    #[serde(default)]
    pub port: Option<usize>,
}

/// A hot-plugged volume on the command line of a live migration's target: its
/// block nodes (protocol, then raw format node named after the volume) and its
/// virtio-blk device on the port it had on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmVolume {
    /// The volume id: device id, format node name and guest serial.
    pub id: String,
    pub nodes: [serde_json::Value; 2],
    pub port: usize,
}

impl VmVolume {
    /// `-device` arguments, as `storage/plug.rs` hot-plugs it.
    pub fn device(&self) -> String {
        format!(
            "virtio-blk-pci,bus={},id={},drive={},serial={}",
            hotplug_port(self.port),
            self.id,
            self.id,
            self.id
        )
    }
}

/// The QEMU network backend id of NIC `nic_id`.
pub fn netdev_id(nic_id: &str) -> String {
    format!("nd-{nic_id}")
}

impl VmNic {
    /// `-netdev` arguments.
    pub fn netdev(&self) -> String {
        format!("tap,id={},fd={}", netdev_id(&self.id), self.fd)
    }
    /// `-device` arguments.
    pub fn device(&self) -> String {
        let bus = self
            .port
            .map(|p| format!("bus={},", hotplug_port(p)))
            .unwrap_or_default();
        format!(
            "virtio-net-pci,{bus}id={},netdev={},mac={},host_mtu={}",
            self.id,
            netdev_id(&self.id),
            self.mac,
            self.mtu
        )
    }
}

impl VmPlan {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.raw")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
}

/// Hot-plug slots per VM (PCIe root ports), i.e. volumes attached at once.
pub const HOTPLUG_PORTS: usize = 8;

/// The id of hot-plug root port `i`.
pub fn hotplug_port(i: usize) -> String {
    format!("hp{i}")
}

/// The seccomp policy QEMU confines itself with (verified against QEMU 10.0:
/// it is incompatible with `-daemonize` and `-run-with user=`, which is why
/// the agent detaches QEMU and drops its privileges itself).
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// QEMU option values separate properties with commas; a literal comma is
/// written twice.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

/// The arguments after the binary name.
pub fn build_argv(plan: &VmPlan) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    a.push("-no-user-config".into());
    a.push("-nodefaults".into());
    let mut push = |opt: &str, val: String| {
        a.push(opt.to_string());
        a.push(val);
    };
    push(
        "-name",
        format!("guest={},debug-threads=on", esc(&plan.name)),
    );
    push("-machine", format!("q35,accel={}", plan.accel.as_str()));
    push(
        "-cpu",
        match plan.accel {
            Accelerator::Kvm => "host".into(),
            Accelerator::Tcg => "max".into(),
        },
    );
    push("-smp", plan.vcpus.to_string());
    push("-m", format!("{}M", plan.memory_mib));
    push("-display", "none".into());
    push("-vga", "none".into());
    push("-msg", "timestamp=on".into());
    // Root disk: thin RAW, host page cache (works on every file system,
    // including tmpfs, which refuses O_DIRECT), discards punch holes.
    match &plan.root {
        // A volume (e.g. an RBD copy-on-write clone): QEMU's JSON syntax.
        Some(nodes) => {
            for n in nodes {
                push("-blockdev", n.to_string());
            }
        }
        None => {
            push(
                "-blockdev",
                format!(
                    "driver=file,node-name=root-file,filename={},cache.direct=off,discard=unmap",
                    esc(&p(&plan.disk()))
                ),
            );
            push(
                "-blockdev",
                "driver=raw,node-name=root,file=root-file,discard=unmap".into(),
            );
        }
    }
    // The firmware boots the root disk; with -kernel the kernel comes first
    // (QEMU's linuxboot option ROM claims boot index 0).
    push(
        "-device",
        match plan.boot {
            Boot::Disk => "virtio-blk-pci,id=root-disk,drive=root,bootindex=0".into(),
            Boot::Kernel { .. } => "virtio-blk-pci,id=root-disk,drive=root".into(),
        },
    );
    // NoCloud seed, read-only.
    push(
        "-blockdev",
        format!(
            "driver=file,node-name=seed-file,filename={},read-only=on",
            esc(&p(&plan.seed()))
        ),
    );
    push(
        "-blockdev",
        "driver=raw,node-name=seed,file=seed-file,read-only=on".into(),
    );
    push("-device", "virtio-blk-pci,id=seed-disk,drive=seed".into());
    if let Boot::Kernel {
        kernel,
        initrd,
        cmdline,
    } = &plan.boot
    {
        push("-kernel", p(kernel));
        if let Some(initrd) = initrd {
            push("-initrd", p(initrd));
        }
        push("-append", cmdline.clone());
    }
    // VPC NICs: TAPs in the host's namespace, plugged into the VPC bridge by the
    // network agent. Without any, a user-mode NIC isolated from the host and the
    // outside (restrict=on); QEMU's DHCP server still answers.
    let (hot_nics, nics): (Vec<&VmNic>, Vec<&VmNic>) =
        plan.nics.iter().partition(|n| n.port.is_some());
    if nics.is_empty() {
        push("-netdev", "user,id=net0,restrict=on".into());
        push(
            "-device",
            format!("virtio-net-pci,id=nic0,netdev=net0,mac={}", plan.mac),
        );
    }
    for nic in nics {
        push("-netdev", nic.netdev());
        push("-device", nic.device());
    }
    for (i, gpu) in plan.gpus.iter().enumerate() {
        push("-device", format!("vfio-pci,id=gpu{i},host={}", esc(gpu)));
    }
    // Empty PCIe root ports: q35's root bus takes no hot plug, so volumes are
    // plugged into these (last, so the other devices keep their addresses).
    for i in 0..HOTPLUG_PORTS {
        push(
            "-device",
            format!("pcie-root-port,id={},chassis={}", hotplug_port(i), i + 1),
        );
    }
    // What was hot-plugged before a live migration, on the same ports.
    for vol in &plan.volumes {
        for n in &vol.nodes {
            push("-blockdev", n.to_string());
        }
        push("-device", vol.device());
    }
    for nic in hot_nics {
        push("-netdev", nic.netdev());
        push("-device", nic.device());
    }
    push(
        "-chardev",
        format!(
            "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
            esc(&p(&plan.console_socket())),
            esc(&p(&plan.serial_log()))
        ),
    );
    push("-serial", "chardev:ser0".into());
    push(
        "-qmp",
        format!("unix:{},server=on,wait=off", esc(&p(&plan.qmp_socket()))),
    );
    push("-pidfile", p(&plan.pidfile()));
    push("-sandbox", SANDBOX.into());
    if let Some(uri) = &plan.incoming {
        push("-incoming", uri.clone());
    }
    a
}

/// A stable locally administered MAC (QEMU's 52:54:00 prefix) from the id.
pub fn mac_for(instance_id: &str) -> String {
    // FNV-1a: stable across releases, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        (h >> 16) as u8,
        (h >> 8) as u8,
        h as u8
    )
}

/// Whether `cmdline` (the NUL-separated `/proc/<pid>/cmdline`) is a QEMU
/// this agent started for `instance_id`: a `qemu-system-*` binary whose
/// `-pidfile` is `<...>/<instance_id>/qemu.pid`.
pub fn cmdline_matches(cmdline: &[u8], instance_id: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_qemu = args.iter().take(2).any(|a| {
        let s = String::from_utf8_lossy(a);
        Path::new(s.as_ref())
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("qemu-system-"))
    });
    if !is_qemu {
        return false;
    }
    let want = format!("/{instance_id}/qemu.pid");
    args.windows(2)
        .any(|w| w[0] == b"-pidfile" && String::from_utf8_lossy(w[1]).ends_with(&want))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(accel: Accelerator, boot: Boot, gpus: Vec<String>) -> VmPlan {
        VmPlan {
            instance_id: "ins-00000000000000aa".into(),
            name: "web-1".into(),
            vcpus: 2,
            memory_mib: 512,
            accel,
            dir: "/var/lib/yunhan/agent/vms/ins-00000000000000aa".into(),
            boot,
            mac: mac_for("ins-00000000000000aa"),
            gpus,
            root: None,
            nics: vec![],
            volumes: vec![],
            incoming: None,
        }
    }

    #[test]
    fn vm_booting_from_an_rbd_volume() {
        let mut p = plan(Accelerator::Tcg, Boot::Disk, vec![]);
        p.root = Some([
            serde_json::json!({"driver": "rbd", "node-name": "root-file", "pool": "vols",
                "image": "vol-00000000000000b1", "conf": "/etc/yunhan/ceph.conf", "user": "admin"}),
            serde_json::json!({"driver": "raw", "node-name": "root", "file": "root-file"}),
        ]);
        insta::assert_json_snapshot!(build_argv(&p));
    }

    #[test]
    fn vm_with_two_vpc_nics() {
        let mut p = plan(Accelerator::Tcg, Boot::Disk, vec![]);
        for (i, id) in ["nic-00000000000000a1", "nic-00000000000000a2"]
            .iter()
            .enumerate()
        {
            p.nics.push(VmNic {
                id: id.to_string(),
                mac: format!("52:54:0a:0a:01:0{}", i + 2),
                device: yunhan_net::names::port_device(id),
                fd: 40 + i as i32,
                mtu: 1450,
                port: None,
            });
        }
        insta::assert_json_snapshot!(build_argv(&p));
    }

    /// A live migration's target: the NIC from start time on the root bus, a NIC
    /// and a volume hot-plugged later on the ports they had on the source.
    #[test]
    fn incoming_vm_with_a_hot_plugged_volume_and_nic() {
        let mut p = plan(Accelerator::Tcg, Boot::Disk, vec![]);
        for (i, port) in [None, Some(1)].into_iter().enumerate() {
            let id = format!("nic-00000000000000a{}", i + 1);
            p.nics.push(VmNic {
                device: yunhan_net::names::port_device(&id),
                id,
                mac: format!("52:54:0a:0a:01:0{}", i + 2),
                fd: 40 + i as i32,
                mtu: 1450,
                port,
            });
        }
        p.volumes.push(VmVolume {
            id: "vol-00000000000000d1".into(),
            nodes: [
                serde_json::json!({"driver": "rbd", "node-name": "vol-00000000000000d1-file",
                    "pool": "vols", "image": "vol-00000000000000d1"}),
                serde_json::json!({"driver": "raw", "node-name": "vol-00000000000000d1",
                    "file": "vol-00000000000000d1-file"}),
            ],
            port: 0,
        });
        p.incoming = Some("tcp:10.0.0.2:4444".into());
        let argv = build_argv(&p);
        let at = |s: &str| argv.iter().position(|a| a.contains(s)).unwrap();
        assert!(at("id=hp7,") < at("bus=hp0,id=vol-00000000000000d1"));
        assert!(at("bus=hp1,id=nic-00000000000000a2") > at("id=hp7,"));
        assert!(!argv.iter().any(|a| a.contains("user,id=net0")));
        insta::assert_json_snapshot!(argv);
    }

    #[test]
    fn only_hot_plugged_nics_keep_the_user_mode_nic_on_the_root_bus() {
        let mut p = plan(Accelerator::Tcg, Boot::Disk, vec![]);
        p.nics.push(VmNic {
            id: "nic-00000000000000a1".into(),
            mac: "52:54:0a:0a:01:02".into(),
            device: "tap-x".into(),
            fd: 40,
            mtu: 1450,
            port: Some(3),
        });
        let argv = build_argv(&p);
        assert!(argv.iter().any(|a| a == "user,id=net0,restrict=on"));
        assert!(argv
            .iter()
            .any(|a| a.starts_with("virtio-net-pci,bus=hp3,")));
    }

    #[test]
    fn tcg_disk_vm() {
        insta::assert_json_snapshot!(build_argv(&plan(Accelerator::Tcg, Boot::Disk, vec![])));
    }

    #[test]
    fn direct_kernel_vm() {
        let boot = Boot::Kernel {
            kernel: "/var/lib/yunhan/agent/vms/ins-00000000000000aa/kernel".into(),
            initrd: Some("/var/lib/yunhan/agent/vms/ins-00000000000000aa/initrd".into()),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
        };
        insta::assert_json_snapshot!(build_argv(&plan(Accelerator::Tcg, boot, vec![])));
    }

    #[test]
    fn gpu_vm_with_two_vfio_devices() {
        let gpus = vec!["0000:3b:00.0".into(), "0000:af:00.0".into()];
        insta::assert_json_snapshot!(build_argv(&plan(Accelerator::Kvm, Boot::Disk, gpus)));
    }

    #[test]
    fn kvm_vm() {
        insta::assert_json_snapshot!(build_argv(&plan(Accelerator::Kvm, Boot::Disk, vec![])));
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let mut pl = plan(Accelerator::Tcg, Boot::Disk, vec![]);
        pl.dir = "/srv/a,b/ins-1".into();
        let argv = build_argv(&pl);
        assert!(argv
            .iter()
            .any(|a| a.contains("filename=/srv/a,,b/ins-1/disk.raw,")));
    }

    #[test]
    fn mac_is_stable_and_local() {
        assert_eq!(mac_for("ins-1"), mac_for("ins-1"));
        assert_ne!(mac_for("ins-1"), mac_for("ins-2"));
        assert!(mac_for("ins-1").starts_with("52:54:00:"));
    }

    #[test]
    fn pid_cmdline_matching() {
        let ours =
            b"/usr/bin/qemu-system-x86_64\0-name\0guest=a\0-pidfile\0/s/vms/ins-1/qemu.pid\0";
        assert!(cmdline_matches(ours, "ins-1"));
        assert!(!cmdline_matches(ours, "ins-2"));
        // started through setsid: argv[0] is still QEMU after exec
        let other = b"/usr/bin/python3\0-pidfile\0/s/vms/ins-1/qemu.pid\0";
        assert!(!cmdline_matches(other, "ins-1"));
        assert!(!cmdline_matches(b"", "ins-1")); // a zombie
        let similar = b"qemu-system-x86_64\0-pidfile\0/s/vms/ins-10/qemu.pid\0";
        assert!(!cmdline_matches(similar, "ins-1"));
    }
}
