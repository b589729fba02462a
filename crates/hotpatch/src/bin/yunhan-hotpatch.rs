//! Stand-alone `yunhan-hotpatch` driver for tests and benchmarks, until the `yunhan`
//! binary wires `hotpatch` as a subcommand. Same code path: `yunhan_hotpatch::run`.
use clap::Parser;

#[derive(Parser)]
#[command(name = "yunhan-hotpatch", about = "Live-patch a running process")]
struct Cli {
    #[command(subcommand)]
    cmd: yunhan_hotpatch::HotpatchCommand,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = yunhan_hotpatch::run(cli.cmd) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
