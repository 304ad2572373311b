//! Errors of kernel operations, and the one place errno is classified.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused a request; `op` names it the way `ip` would.
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("malformed netlink reply: {0}")]
    Decode(String),
    #[error("network namespace {}: {source}", path.display())]
    NetnsOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a network namespace", path.display())]
    NotNetns { path: PathBuf },
    #[error("the thread that entered network namespace {} failed", path.display())]
    NetnsThread { path: PathBuf },
    /// After opening a socket in another namespace the thread could not go
    /// back to its own: it must do nothing more.
    #[error("returning from network namespace {}: {source}", path.display())]
    NetnsReturn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    /// A request podnet could not build from what it was given.
    #[error("{op}: {reason}")]
    Invalid { op: String, reason: String },
    /// The name is taken by a link of another kind.
    #[error("{name} exists and is a {kind} link, not a {want}")]
    WrongKind {
        name: String,
        kind: String,
        want: &'static str,
    },
    /// Another actor removed the object between podnet's change and its
    /// next look at it.
    #[error("{what} vanished while podnet was setting it up")]
    Vanished { what: String },
    /// Another actor keeps replacing the object podnet sets up.
    #[error("{what} keeps being replaced concurrently")]
    Contended { what: String },
    /// Something the node must have for podnet to work is not there.
    #[error("{what}: {reason}")]
    Missing { what: String, reason: String },
}

impl NetlinkError {
    pub fn kernel(op: impl Into<String>, source: io::Error) -> Self {
        Self::Kernel {
            op: op.into(),
            source,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. }
            | Self::Socket(source)
            | Self::NetnsOpen { source, .. }
            | Self::NetnsReturn { source, .. }
            | Self::Sysctl { source, .. } => source.raw_os_error(),
            Self::Decode(_)
            | Self::NotNetns { .. }
            | Self::NetnsThread { .. }
            | Self::Invalid { .. }
            | Self::WrongKind { .. }
            | Self::Vanished { .. }
            | Self::Contended { .. }
            | Self::Missing { .. } => None,
        }
    }

    /// The object is already gone: what `remove_*` treats as success.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc_errno::ENODEV)
                | Some(libc_errno::ENOENT)
                | Some(libc_errno::ESRCH)
                | Some(libc_errno::EADDRNOTAVAIL)
        )
    }

    /// The object is already there: what `ensure_*` treats as success.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }
}

/// errno values through nix, so no direct libc dependency is needed.
pub(crate) mod libc_errno {
    use nix::errno::Errno;
    pub const ENODEV: i32 = Errno::ENODEV as i32;
    pub const ENOENT: i32 = Errno::ENOENT as i32;
    pub const ESRCH: i32 = Errno::ESRCH as i32;
    pub const EADDRNOTAVAIL: i32 = Errno::EADDRNOTAVAIL as i32;
    pub const EEXIST: i32 = Errno::EEXIST as i32;
    pub const EAFNOSUPPORT: i32 = Errno::EAFNOSUPPORT as i32;
}
