//! The plugin's error, and the one exhaustive mapping to CNI error codes.

use std::error::Error as _;

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
    #[error("reading the network configuration from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("IPAM plugin {plugin} returned an unusable result: {source}")]
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
    #[error("ipam section: {message}")]
    IpamConfig {
        unknown_field: bool,
        message: String,
    },
    #[error(transparent)]
    Daemon(podnet_ipam::client::ClientError),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("podnetd is down and the release could not be spooled: {0}")]
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
    #[error("{name} exists and is a {kind} link, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("the IPAM request thread failed")]
    IpamThread,
    #[error("check failed: {0}")]
    Check(String),
    /// DEL and GC keep going after a failure and report them all at the end.
    #[error("{} step(s) failed: {}", .0.len(), join(.0))]
    Several(Vec<PluginError>),
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

impl PluginError {
    /// Whether the IPAM request may have reserved something that a
    /// rollback must release. A daemon that could not be reached, or an
    /// IPAM plugin that does not exist, reserved nothing.
    pub fn ipam_may_have_reserved(&self) -> bool {
        !matches!(
            self,
            Self::Daemon(podnet_ipam::client::ClientError::Unavailable { .. })
                | Self::Ipam(DelegateError::NotFound { .. })
                | Self::NoIpam
                | Self::IpamConfig { .. }
        )
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Env(_) => ErrorCode::INVALID_ENV,
            Self::Stdin(_) => ErrorCode::IO,
            Self::Config(e) => e.code(),
            // An answer the IPAM plugin got wrong is the IPAM plugin's
            // failure, whatever is wrong in it (not a decode error of our
            // own input, code 6).
            Self::IpamResult { .. } | Self::IpamNoAddress(_) | Self::IpamGateway { .. } => {
                ErrorCode::IPAM
            }
            Self::Ipam(e) => e.code(),
            Self::IpamConfig {
                unknown_field: true,
                ..
            } => ErrorCode::UNSUPPORTED_FIELD,
            Self::IpamConfig {
                unknown_field: false,
                ..
            } => ErrorCode::INVALID_CONFIG,
            Self::Daemon(e) => daemon_code(e),
            Self::NotReady(_) => ErrorCode::NOT_AVAILABLE,
            Self::Spool(_) => ErrorCode::IO,
            Self::VerbNotInVersion { .. } => ErrorCode::INCOMPATIBLE_VERSION,
            Self::MissingPrevResult { .. } | Self::NoIpam | Self::NoValidAttachments => {
                ErrorCode::INVALID_CONFIG
            }
            Self::NetnsMissing(_) => ErrorCode::UNKNOWN_CONTAINER,
            Self::NotNetns(_) | Self::NetnsIsNode(_) => ErrorCode::INVALID_ENV,
            Self::InterfaceExists { .. } => ErrorCode::INTERFACE_EXISTS,
            Self::Kernel(_) | Self::IpamThread => ErrorCode::KERNEL,
            Self::NotABridge { .. } => ErrorCode::INVALID_CONFIG,
            Self::Check(_) => ErrorCode::CHECK_FAILED,
            Self::Several(errors) => errors
                .first()
                .map(PluginError::code)
                .unwrap_or(ErrorCode::KERNEL),
        }
    }

    /// The source chain, for the error reply's `details`.
    pub fn details(&self) -> String {
        if let Self::Ipam(e) = self {
            let d = e.details();
            if !d.is_empty() {
                return d;
            }
        }
        let mut chain = Vec::new();
        let mut source = self.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        chain.join(": ")
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
