//! `podnetd`, the node daemon.

fn main() -> std::process::ExitCode {
    podnetd::cli::main()
}
