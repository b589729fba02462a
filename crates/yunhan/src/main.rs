//! `yunhan`: one binary for every role — `up` (all-in-one), `server`,
//! `agent`, the client commands, `vortex` and `hotpatch`.

mod ceph;
mod daemon;
mod ha;

use clap::{Parser, Subcommand};

/// Yunhan: a private cloud in one binary.
///
/// Start an all-in-one cloud on this machine with `yunhan up`; it writes
/// ~/.config/yunhan/config.toml so the client commands work at once:
///
///   yunhan host list
///   yunhan flavor list
///   yunhan vm create web1 --image tiny --flavor small --wait
///
/// Grow with `yunhan server --store etcd://…` on control-plane nodes and
/// `yunhan agent --store etcd://…` on every hypervisor host.
#[derive(Parser, Debug)]
#[command(
    name = "yunhan",
    version,
    verbatim_doc_comment,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    client: yunhan_cli::ClientArgs,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    Up(daemon::UpArgs),
    Server(daemon::ServerArgs),
    Agent(daemon::AgentArgs),
    #[command(flatten)]
    Client(yunhan_cli::Command),
    /// Live-patch functions of a running process (e.g. QEMU) without restarting it
    #[command(subcommand)]
    Hotpatch(yunhan_hotpatch::cli::HotpatchCommand),
    /// Run a Vortex XDP layer-4 load balancer node
    Vortex(yunhan_vortex::cli::VortexArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        match cli.command {
            Top::Up(a) => daemon::up(a).await,
            Top::Server(a) => daemon::server(a).await,
            Top::Agent(a) => daemon::agent(a).await,
            Top::Hotpatch(c) => {
                tokio::task::spawn_blocking(move || yunhan_hotpatch::cli::run(c)).await??;
                Ok(())
            }
            Top::Vortex(a) => {
                daemon::init_logging();
                Ok(yunhan_vortex::cli::run(a).await?)
            }
            Top::Client(c) => match yunhan_cli::run(cli.client, c).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    eprintln!("error: {e}");
                    if let Some(h) = yunhan_cli::hint(&e) {
                        eprintln!("hint: {h}");
                    }
                    std::process::exit(1);
                }
            },
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
