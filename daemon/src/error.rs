//! The daemon's errors: each says what it was doing.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("opening the state database {}: {source}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(transparent)]
    Ipam(#[from] podnet_ipam::error::IpamError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another podnetd holds {} (pid {holder}): one daemon per run directory", lock.display())]
    AlreadyRunning { lock: PathBuf, holder: String },
    #[error("the state database {} cannot be written (a full disk?): stopping, so that a restart resumes from what is on disk", path.display())]
    StateUnwritable { path: PathBuf },
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Client(#[from] podnet_ipam::client::ClientError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Kernel(#[from] podnet_cni::netlink::NetlinkError),
}

impl DaemonError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
