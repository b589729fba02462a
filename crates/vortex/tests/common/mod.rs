//! What the fixture tests share: a small data plane of their own, pinned under a
//! directory named after the test process and `tag`, removed when dropped.

use yunhan_vortex::dataplane::LoadOptions;

/// Maglev table size of the fixtures (prime, small).
pub const M: u32 = 1009;

pub fn options(tag: &str) -> LoadOptions {
    let dir = format!(
        "/sys/fs/bpf/yunhan-vortex-test-{}-{tag}",
        std::process::id()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut o = LoadOptions::new(dir);
    o.table_size = M;
    o.max_vips = 4;
    o.conntrack_size = 4096;
    o.ephemeral = true;
    o
}
