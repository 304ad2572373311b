//! The `podnet` CNI plugin, executed by the container runtime.

fn main() -> std::process::ExitCode {
    podnet_cni::skel::run(&podnet_cni::cmd::PODNET)
}
