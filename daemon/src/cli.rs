//! Command line: flags into typed values, then `run` (the agent), `list`,
//! `install` or `uninstall`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cniconf;
use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::nodenet::NodeNet;

#[derive(Parser)]
#[command(name = "podnetd", about = "podnet node daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(Box<DaemonConfig>),
    /// Remove podnet from this node (what podnetd does by itself when its
    /// DaemonSet is deleted): the CNI configuration, the plugins, routes,
    /// bridge, VXLAN device, nftables table and state. Takes `run`'s flags.
    Uninstall(Box<DaemonConfig>),
    /// Copy the `podnet` and `podnet-ipam` plugins next to this binary into
    /// the CNI bin dir (the DaemonSet's init step).
    Install {
        #[arg(long, env = "PODNET_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
        cni_bin_dir: PathBuf,
    },
    /// List this node's allocations and pool use, and each pod's
    /// NetworkPolicy state.
    List {
        /// The daemon's IPAM socket.
        #[arg(long, default_value = podnet_ipam::proto::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Ask the running daemon about NetworkPolicy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// May pod FROM open a connection to pod TO on PORT? ALLOW or DENY,
    /// and the policies that decide it (as this node enforces them).
    Explain {
        /// NAMESPACE/POD
        #[arg(long, value_parser = crate::admin::parse_pod)]
        from: podnet_ipam::proto::PodName,
        /// NAMESPACE/POD
        #[arg(long, value_parser = crate::admin::parse_pod)]
        to: podnet_ipam::proto::PodName,
        /// PORT/PROTOCOL (`80/TCP`; the protocol defaults to TCP).
        #[arg(long, value_parser = crate::admin::parse_port)]
        port: (u16, String),
        /// The daemon's IPAM socket.
        #[arg(long, default_value = podnet_ipam::proto::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Install { cni_bin_dir } => cniconf::install_plugins(&cni_bin_dir).map(|paths| {
            for p in paths {
                println!("installed {}", p.display());
            }
        }),
        Command::List { socket } => crate::admin::list(&socket).map(|text| print!("{text}")),
        Command::Policy(PolicyCommand::Explain {
            from,
            to,
            port,
            socket,
        }) => crate::admin::explain(&socket, from, to, port).map(|text| print!("{text}")),
        Command::Run(config) => run(*config),
        Command::Uninstall(config) => uninstall(&config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "podnetd failed");
            eprintln!("podnetd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn uninstall(config: &DaemonConfig) -> Result<(), DaemonError> {
    let net = NodeNet::open(config.netns.as_deref())?;
    crate::uninstall::clean_node(&net, config)
}

fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(crate::agent::run(config))
}
