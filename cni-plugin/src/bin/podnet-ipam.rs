//! The `podnet-ipam` CNI IPAM plugin, executed by a main plugin.

fn main() -> std::process::ExitCode {
    podnet_cni::skel::run(&podnet_cni::ipam_plugin::PODNET_IPAM)
}
