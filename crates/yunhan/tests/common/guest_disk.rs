//! A guest's disks seen from inside it, through its serial console: which block device
//! carries a volume (by its serial, the volume id), and bytes written and read at its start.

use std::time::Duration;

use super::GuestShell;

/// The guest's block device whose serial is the volume id, if any.
pub async fn find_device(sh: &mut GuestShell, vol_id: &str) -> Option<String> {
    let out = sh
        .run(&format!(
            "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {vol_id} ] && echo \"dev=${{d##*/}}=\"; done"
        ))
        .await;
    out.split("dev=")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .find(|d| d.starts_with("vd"))
        .map(str::to_string)
}

/// Waits until the guest has (`true`) or no longer has the volume's disk.
pub async fn wait_device(sh: &mut GuestShell, vol_id: &str, present: bool) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dev = find_device(sh, vol_id).await;
        if dev.is_some() == present {
            return dev;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the disk with serial {vol_id} is {} in the guest",
            if present { "missing" } else { "still there" }
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn device_of(sh: &mut GuestShell, vol_id: &str) -> String {
    wait_device(sh, vol_id, true).await.unwrap()
}

/// Writes `pattern` at the start of the volume from inside the guest.
pub async fn write_pattern(sh: &mut GuestShell, dev: &str, pattern: &str) {
    let out = sh
        .run(&format!(
            "printf '{pattern}' > /tmp/p && dd if=/tmp/p of=/dev/{dev} bs=512 count=1 conv=sync,fsync 2>/dev/null && sync && echo wrote-ok"
        ))
        .await;
    assert!(
        out.contains("wrote-ok\r\n") || out.contains("wrote-ok\n"),
        "{out}"
    );
}

/// The first `len` bytes of the volume, read from inside the guest.
pub async fn read_pattern(sh: &mut GuestShell, dev: &str, len: usize) -> String {
    let out = sh
        .run(&format!(
            "echo \"data=<$(dd if=/dev/{dev} bs=512 count=1 2>/dev/null | head -c {len})>\""
        ))
        .await;
    let start = out.rfind("data=<").expect("a data line") + "data=<".len();
    out[start..].split('>').next().unwrap().to_string()
}
