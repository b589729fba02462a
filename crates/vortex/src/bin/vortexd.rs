//! Stand-alone Vortex daemon: the same code path as `yunhan vortex`
//! (used by the end-to-end tests and benchmarks).
use clap::Parser;

#[derive(Parser)]
#[command(name = "vortexd", about = "Vortex XDP layer-4 load balancer")]
struct Cli {
    #[command(flatten)]
    args: yunhan_vortex::VortexArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match yunhan_vortex::run(Cli::parse().args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vortexd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
