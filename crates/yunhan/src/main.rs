//! `yunhan`: one binary for every role — `up` (all-in-one), `server`,
//! `agent`, the client commands, `vortex` and `hotpatch`.

mod ceph;
mod daemon;
mod ha;
mod import;
mod object_storage;

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

/// The global `-o/--output` (one flag for every command) as `yunhan hotpatch` understands it.
/// Mapped by the value's name: `yunhan-hotpatch` does not depend on the client crate.
fn hotpatch_output(
    client: &yunhan_cli::ClientArgs,
) -> anyhow::Result<yunhan_hotpatch::cli::OutputFormat> {
    use clap::ValueEnum;
    let name = client
        .output
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    yunhan_hotpatch::cli::OutputFormat::from_str(&name, false)
        .map_err(|_| anyhow::anyhow!("yunhan hotpatch cannot print -o {name}"))
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
            Top::Up(a) => daemon::up(a, cli.client.config).await,
            Top::Server(a) => daemon::server(a, cli.client.config).await,
            Top::Agent(a) => daemon::agent(a).await,
            Top::Hotpatch(c) => {
                let output = hotpatch_output(&cli.client)?;
                tokio::task::spawn_blocking(move || yunhan_hotpatch::cli::run(c, output)).await??;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use yunhan_hotpatch::cli::{HotpatchCommand, OutputFormat};

    /// clap's own consistency checks (unique ids, flags and shorts per command, including the
    /// global client options propagated into every subcommand; value types; requirements)
    /// over the whole `yunhan` tree.
    #[test]
    fn command_tree_passes_clap_debug_assert() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("yunhan").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("yunhan {}: {e}", args.join(" ")))
    }

    /// Every `yunhan hotpatch` subcommand, with its required arguments.
    const HOTPATCH: &[&[&str]] = &[
        &["hotpatch", "apply", "--pid", "12", "--patch", "fix.so"],
        &["hotpatch", "list", "--pid", "12"],
        &["hotpatch", "revert", "--pid", "12"],
    ];

    #[test]
    fn every_hotpatch_subcommand_is_covered() {
        let cmd = Cli::command();
        let mut names: Vec<&str> = cmd
            .find_subcommand("hotpatch")
            .expect("hotpatch subcommand")
            .get_subcommands()
            .map(|c| c.get_name())
            .collect();
        names.sort_unstable();
        let mut covered: Vec<&str> = HOTPATCH.iter().map(|a| a[1]).collect();
        covered.sort_unstable();
        assert_eq!(names, covered);
    }

    /// `-o json` is the one global flag, wherever it is written; `yunhan hotpatch` gets it.
    #[test]
    fn hotpatch_subcommands_take_the_global_output() {
        for args in HOTPATCH {
            let cli = parse(args);
            assert!(matches!(cli.command, Top::Hotpatch(_)), "{args:?}");
            assert_eq!(hotpatch_output(&cli.client).unwrap(), OutputFormat::Table);
            for json in [
                [args, &["-o", "json"][..]].concat(),
                [args, &["--output", "json"][..]].concat(),
                [&["-o", "json"][..], args].concat(),
            ] {
                let cli = parse(&json);
                assert_eq!(
                    hotpatch_output(&cli.client).unwrap(),
                    OutputFormat::Json,
                    "{json:?}"
                );
            }
        }
        let cli = parse(&[
            "hotpatch", "apply", "--pid", "7", "--patch", "fix.so", "--map", "a=b", "-o", "json",
        ]);
        let Top::Hotpatch(HotpatchCommand::Apply {
            pid, patch, map, ..
        }) = cli.command
        else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (pid, patch.to_str(), map),
            (7, Some("fix.so"), vec!["a=b".to_string()])
        );
        let cli = parse(&[
            "hotpatch", "revert", "--pid", "7", "--func", "f", "-o", "json",
        ]);
        let Top::Hotpatch(HotpatchCommand::Revert { func, .. }) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(func.as_deref(), Some("f"));
    }

    /// `yunhan vortex` shares the name `config` with the client's global `--config`: the
    /// daemon's own `-c/--config` must be the one it gets, with or without `-o json`.
    #[test]
    fn vortex_takes_its_own_config_and_the_global_output() {
        for args in [
            &["vortex", "-c", "lb.toml", "-i", "eth0"][..],
            &[
                "vortex",
                "--config",
                "lb.toml",
                "--interface",
                "eth0",
                "-o",
                "json",
            ],
            &[
                "-o", "json", "vortex", "-c", "lb.toml", "-i", "eth0", "--name", "n1",
            ],
        ] {
            let cli = parse(args);
            let Top::Vortex(v) = cli.command else {
                panic!("{args:?}: {:?}", cli.command)
            };
            assert_eq!(v.config, std::path::Path::new("lb.toml"), "{args:?}");
            assert_eq!(v.interface, "eth0");
        }
        // Without the daemon's own config it does not start (the client's is no substitute).
        assert!(
            Cli::try_parse_from(["yunhan", "--config", "c.toml", "vortex", "-i", "eth0"]).is_err()
        );
    }
}
