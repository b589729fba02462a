//! Compiles the XDP programs in `bpf/` with clang (`-target bpf -O2 -g`) into
//! OUT_DIR; the crate embeds the objects with `include_bytes!`.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64",
        Ok("aarch64") => "aarch64",
        Ok(other) => panic!("unsupported target arch {other}"),
        Err(_) => "x86_64",
    };
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    for name in ["vortex", "pass"] {
        let src = format!("bpf/{name}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I/usr/include/{arch}-linux-gnu"))
            .arg("-Ibpf")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {clang} (install clang, llvm and libbpf-dev: scripts/packages/vortex.txt): {e}")
            });
        assert!(status.success(), "clang failed on {src}");
    }
}
