//! The plugin's error, and the one exhaustive mapping to CNI error codes.

use crate::delegate::DelegateError;
use crate::netlink::NetlinkError;
use crate::spec::{ConfigError, ErrorCode, ResultError};

/// Invalid or missing `CNI_*` environment variables.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("required environment variables missing: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("unknown CNI_COMMAND {0:?}")]
    UnknownCommand(String),
    #[error("invalid CNI_CONTAINERID {0:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
    BadContainerId(String),
    #[error("invalid CNI_IFNAME: {0}")]
    BadIfName(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("reading the network configuration from stdin")]
    Stdin(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("IPAM plugin {plugin} returned an unusable result")]
    IpamResult {
        plugin: String,
        #[source]
        source: ResultError,
    },
    #[error("IPAM plugin {0} returned no IP address")]
    IpamNoAddress(String),
    #[error("IPAM gateway {gateway} does not fit address {address}")]
    IpamGateway {
        gateway: std::net::IpAddr,
        address: ipnetwork::IpNetwork,
    },
    #[error(transparent)]
    Daemon(podnet_ipam::client::ClientError),
    #[error("podnetd answered {verb} with {answer}")]
    UnexpectedAnswer { verb: &'static str, answer: String },
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("not ready: podnetd did not answer STATUS")]
    StatusUnanswered(#[source] podnet_ipam::client::ClientError),
    #[error("podnetd is down and the release could not be spooled")]
    Spool(#[source] std::io::Error),
    #[error("IPAM: {0}")]
    Ipam(#[source] DelegateError),
    #[error("config version {version} does not support {verb}")]
    VerbNotInVersion {
        verb: &'static str,
        version: &'static str,
    },
    #[error("the configuration has no ipam section: podnet needs one to address pods")]
    NoIpam,
    #[error("GC needs cni.dev/valid-attachments in the configuration")]
    NoValidAttachments,
    #[error("{verb} needs a prevResult in the configuration")]
    MissingPrevResult { verb: &'static str },
    #[error("container network namespace: {0}")]
    NetnsMissing(#[source] NetlinkError),
    #[error("CNI_NETNS: {0}")]
    NotNetns(#[source] NetlinkError),
    #[error("CNI_NETNS {0} is the node's own network namespace, not a pod's")]
    NetnsIsNode(String),
    #[error("interface {ifname} already exists in {netns}")]
    InterfaceExists { ifname: String, netns: String },
    #[error(transparent)]
    Kernel(#[from] NetlinkError),
    #[error("the thread releasing the hostPorts and the addresses failed")]
    IpamThread,
    #[error("hostPort {mapping} is taken by {owner} on this node")]
    HostPortTaken { mapping: String, owner: String },
    #[error("hostPort rules: {0}")]
    HostPort(#[source] crate::nft::NftError),
    #[error("cannot turn route_localnet on for {path} (hostPort from localhost): {source}")]
    RouteLocalnet {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Check(#[from] CheckFailure),
    /// DEL and GC keep going after a failure and report them all at the end.
    #[error("{} step(s) failed: {}", .0.len(), join(.0))]
    Several(Vec<PluginError>),
    /// A failed ADD whose rollback failed too: the first failure decides
    /// the code and the message, the rollback's failures go in `details`.
    #[error("{error}")]
    RolledBackBadly {
        error: Box<PluginError>,
        cleanup: Vec<PluginError>,
    },
}

/// What CHECK found missing or different from prevResult.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error("interface {ifname} is missing from {netns}")]
    InterfaceMissing { ifname: String, netns: String },
    #[error("interface {ifname} has MAC {actual}, prevResult says {expected}")]
    MacDiffers {
        ifname: String,
        actual: String,
        expected: String,
    },
    #[error("address {address} is missing from {ifname}")]
    AddressMissing {
        address: ipnetwork::IpNetwork,
        ifname: String,
    },
    #[error("route {dst}{} is missing from {ifname}", via(.gw))]
    RouteMissing {
        dst: ipnetwork::IpNetwork,
        gw: Option<std::net::IpAddr>,
        ifname: String,
    },
    #[error("host veth {0} is missing")]
    HostVethMissing(String),
    #[error("bridge {0} is missing")]
    BridgeMissing(String),
    #[error("hostPort {0} is not mapped to this pod")]
    HostPortMissing(String),
    #[error("host veth {veth} is not attached to bridge {bridge}")]
    NotOnBridge { veth: String, bridge: String },
    #[error("bridge {bridge} or host veth {veth} is down")]
    Down { bridge: String, veth: String },
    #[error("podnetd holds no addresses for {container_id}/{ifname}")]
    NotAllocated {
        container_id: String,
        ifname: String,
    },
    #[error("address {address} is not allocated to {container_id}/{ifname} in podnetd")]
    AddressNotAllocated {
        address: ipnetwork::IpNetwork,
        container_id: String,
        ifname: String,
    },
}

fn via(gw: &Option<std::net::IpAddr>) -> String {
    gw.map(|g| format!(" via {g}")).unwrap_or_default()
}

fn join(errors: &[PluginError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn daemon_code(e: &podnet_ipam::client::ClientError) -> ErrorCode {
    use podnet_ipam::client::ClientError as C;
    use podnet_ipam::proto::ErrorKind as K;
    match e {
        // Down, restarting, or not yet holding a node CIDR: the runtime
        // retries the pod later.
        C::Unavailable { .. }
        | C::Interrupted { .. }
        | C::Daemon {
            kind: K::NotReady, ..
        }
        // The pod's policy could not be put in place yet (labels not
        // readable, policies not read yet): starting it later is safe,
        // starting it unprotected is not.
        | C::Daemon {
            kind: K::PolicyUnresolved,
            ..
        } => ErrorCode::TRY_AGAIN_LATER,
        C::Daemon {
            kind: K::InvalidRequest,
            ..
        } => ErrorCode::INVALID_CONFIG,
        C::Daemon {
            kind: K::Exhausted, ..
        }
        | C::Daemon {
            kind: K::Internal, ..
        }
        | C::Io { .. }
        | C::Protocol(_) => ErrorCode::IPAM,
    }
}

/// Netlink failures by what failed: the kernel, the pod's namespace given
/// as input, or podnet itself.
fn netlink_code(e: &NetlinkError) -> ErrorCode {
    match e {
        NetlinkError::Kernel { .. }
        | NetlinkError::Socket(_)
        | NetlinkError::NetnsReturn { .. }
        | NetlinkError::Sysctl { .. } => ErrorCode::KERNEL,
        // A pod's namespace is sorted out where it is opened
        // (`PluginError::from_netns`); one reaching here is the node's own.
        NetlinkError::NetnsOpen { .. } | NetlinkError::NotNetns { .. } => ErrorCode::KERNEL,
        NetlinkError::Decode(_) | NetlinkError::NetnsThread { .. } => ErrorCode::INTERNAL,
        NetlinkError::Invalid { .. } | NetlinkError::WrongKind { .. } => ErrorCode::INVALID_CONFIG,
        // Someone else's change raced ours: a retry starts afresh.
        NetlinkError::Vanished { .. } | NetlinkError::Contended { .. } => {
            ErrorCode::TRY_AGAIN_LATER
        }
        NetlinkError::Missing { .. } => ErrorCode::KERNEL,
    }
}

impl PluginError {
    /// The outcome of steps that all ran whatever failed: success, the one
    /// failure, or all of them.
    pub fn all(mut errors: Vec<PluginError>) -> Result<(), PluginError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(PluginError::Several(errors)),
        }
    }

    /// Whether the IPAM request may have reserved something that a
    /// rollback must release. A daemon that could not be reached, or an
    /// IPAM plugin that does not exist, reserved nothing.
    pub fn ipam_may_have_reserved(&self) -> bool {
        !matches!(
            self,
            Self::Daemon(podnet_ipam::client::ClientError::Unavailable { .. })
                | Self::Ipam(DelegateError::NotFound { .. })
                | Self::NoIpam
                | Self::Config(_)
        )
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Env(_) => ErrorCode::INVALID_ENV,
            Self::Stdin(_) | Self::Spool(_) | Self::RouteLocalnet { .. } => ErrorCode::IO,
            Self::Config(e) => e.code(),
            // An answer the IPAM plugin got wrong is the IPAM plugin's
            // failure, whatever is wrong in it (not a decode error of our
            // own input, code 6).
            Self::IpamResult { .. }
            | Self::IpamNoAddress(_)
            | Self::IpamGateway { .. }
            | Self::UnexpectedAnswer { .. } => ErrorCode::IPAM,
            Self::Ipam(e) => e.code(),
            Self::Daemon(e) => daemon_code(e),
            Self::NotReady(_) | Self::StatusUnanswered(_) => ErrorCode::NOT_AVAILABLE,
            Self::VerbNotInVersion { .. } => ErrorCode::INCOMPATIBLE_VERSION,
            Self::MissingPrevResult { .. } | Self::NoIpam | Self::NoValidAttachments => {
                ErrorCode::INVALID_CONFIG
            }
            Self::NetnsMissing(_) => ErrorCode::UNKNOWN_CONTAINER,
            Self::NotNetns(_) | Self::NetnsIsNode(_) => ErrorCode::INVALID_ENV,
            Self::InterfaceExists { .. } => ErrorCode::INTERFACE_EXISTS,
            Self::Kernel(e) => netlink_code(e),
            Self::IpamThread => ErrorCode::INTERNAL,
            // The pod holding it may be on its way out (its DEL to come).
            Self::HostPortTaken { .. } => ErrorCode::TRY_AGAIN_LATER,
            Self::HostPort(_) => ErrorCode::KERNEL,
            Self::Check(_) => ErrorCode::CHECK_FAILED,
            Self::Several(errors) => errors
                .first()
                .map(PluginError::code)
                .unwrap_or(ErrorCode::INTERNAL),
            Self::RolledBackBadly { error, .. } => error.code(),
        }
    }

    /// The error reply's `details`: the causes behind the message.
    pub fn details(&self) -> String {
        match self {
            Self::Ipam(e) => match e.details() {
                d if d.is_empty() => source_chain(self),
                d => d,
            },
            Self::RolledBackBadly { error, cleanup } => {
                let rollback = format!("rolling back left something behind: {}", join(cleanup));
                match error.details() {
                    d if d.is_empty() => rollback,
                    d => format!("{d}; {rollback}"),
                }
            }
            _ => source_chain(self),
        }
    }

    /// Errors of kernel operations on the pod namespace, sorted out: a
    /// missing namespace is the container being unknown, a file that is not
    /// one is bad input.
    pub fn from_netns(e: NetlinkError) -> Self {
        match e {
            NetlinkError::NotNetns { .. } => Self::NotNetns(e),
            NetlinkError::NetnsOpen { .. } if e.is_not_found() => Self::NetnsMissing(e),
            NetlinkError::NetnsOpen { .. } => Self::NotNetns(e),
            other => Self::Kernel(other),
        }
    }
}

/// The sources below `e`, outermost first. A cause whose text the message
/// above it already shows (a leaf error that prints its own source, such as
/// `ip link add ...: File exists`) is left out, so `msg` and `details`
/// never say the same thing twice.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut shown = e.to_string();
    let mut chain: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            chain.push(text.clone());
        }
        shown = text;
        source = s.source();
    }
    chain.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn kernel(op: &str, errno: nix::errno::Errno) -> NetlinkError {
        NetlinkError::kernel(op, std::io::Error::from(errno))
    }

    #[test]
    fn msg_and_details_never_say_the_same_thing_twice() {
        // A leaf that prints its own cause: the cause is not repeated.
        let e = PluginError::Kernel(kernel("ip link add pn1", nix::errno::Errno::EEXIST));
        assert!(e.to_string().starts_with("ip link add pn1: "), "{e}");
        assert_eq!(e.details(), "");
        // A wrapper that adds context: the cause goes to details only.
        let e = PluginError::Stdin(std::io::Error::other("pipe closed"));
        assert_eq!(
            e.to_string(),
            "reading the network configuration from stdin"
        );
        assert_eq!(e.details(), "pipe closed");
    }

    #[test]
    fn a_failed_rollback_keeps_the_first_failure_in_front() {
        let e = PluginError::RolledBackBadly {
            error: Box::new(PluginError::Kernel(kernel(
                "ip route add 192.0.2.0/24",
                nix::errno::Errno::ENETUNREACH,
            ))),
            cleanup: vec![PluginError::Spool(std::io::Error::other("disk full"))],
        };
        assert_eq!(e.code(), ErrorCode::KERNEL);
        assert!(
            e.to_string().starts_with("ip route add 192.0.2.0/24"),
            "{e}"
        );
        assert_eq!(
            e.details(),
            "rolling back left something behind: podnetd is down and the release could not be spooled"
        );
    }

    #[test]
    fn netlink_failures_are_coded_by_what_failed() {
        let path = PathBuf::from("/run/netns/x");
        let cases = [
            (
                kernel("ip link set up", nix::errno::Errno::EPERM),
                ErrorCode::KERNEL,
            ),
            (NetlinkError::Decode("short".into()), ErrorCode::INTERNAL),
            (
                NetlinkError::NetnsThread { path: path.clone() },
                ErrorCode::INTERNAL,
            ),
            (
                NetlinkError::NotNetns { path: path.clone() },
                ErrorCode::KERNEL,
            ),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            assert_eq!(PluginError::Kernel(e).code(), want, "{shown}");
        }
        // The pod's namespace, as it is opened: missing is an unknown
        // container, not a namespace is bad input.
        let gone = NetlinkError::NetnsOpen {
            path: path.clone(),
            source: std::io::Error::from(nix::errno::Errno::ENOENT),
        };
        assert_eq!(
            PluginError::from_netns(gone).code(),
            ErrorCode::UNKNOWN_CONTAINER
        );
        let fifo = NetlinkError::NotNetns { path };
        assert_eq!(PluginError::from_netns(fifo).code(), ErrorCode::INVALID_ENV);
        assert_eq!(PluginError::IpamThread.code(), ErrorCode::INTERNAL);
        let vanished = NetlinkError::Vanished {
            what: "bridge podnet0".into(),
        };
        assert_eq!(
            PluginError::Kernel(vanished).code(),
            ErrorCode::TRY_AGAIN_LATER
        );
    }
}
