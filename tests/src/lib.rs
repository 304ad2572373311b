//! The test harness: network namespaces standing in for nodes and pods,
//! the plugins run the way a runtime runs them, and observations of what
//! they did; and the frame the bench programs share (`bench`). Nothing
//! here touches the machine's own namespace.

pub mod bench;
pub mod bins;
pub mod bridged;
mod cbuild;
pub mod churn;
pub mod cleanup;
pub mod cluster;
pub mod containerd;
pub mod cri;
pub mod daemon;
pub mod etcd;
pub mod fake_api;
pub mod net;
pub mod netns;
pub mod node;
pub mod null_cni;
pub mod pause;
pub mod plugin;
pub mod policy;
pub mod reach;
pub mod routed;

/// Root-only tests call this first: they fail loudly, never pass silently,
/// when they cannot do what they test.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test creates network namespaces and must run as root (CI runs as root)"
    );
}
