//! Network namespaces: open one by path and run work inside it.
//!
//! `setns` changes only the calling thread, so the work runs on a
//! short-lived thread of its own and the caller's namespace never changes;
//! only opening a socket, the plugin's hot path, is done in place.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use super::{Netlink, NetlinkError};

/// An open handle on a network namespace (a `/run/netns/X` bind mount or a
/// `/proc/PID/ns/net` file).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens and checks the namespace: entering it is the one reliable test
    /// that a path is a network namespace and not some other file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetlinkError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref().to_path_buf();
        // O_NONBLOCK: opening a FIFO (or another device) for reading would
        // otherwise wait forever for a writer; a namespace file ignores it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(|source| NetlinkError::NetnsOpen {
                path: path.clone(),
                source,
            })?;
        // Only the kernel's namespace filesystem holds namespaces: anything
        // else (a FIFO, a regular file, a directory) is refused at once.
        match nix::sys::statfs::fstatfs(&file) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => {}
            Ok(_) => return Err(NetlinkError::NotNetns { path }),
            Err(e) => {
                return Err(NetlinkError::NetnsOpen {
                    path,
                    source: e.into(),
                })
            }
        }
        Ok(Self { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Moves the calling thread into this namespace.
    fn enter(&self) -> Result<(), NetlinkError> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
            Errno::EINVAL => NetlinkError::NotNetns {
                path: self.path.clone(),
            },
            e => NetlinkError::NetnsOpen {
                path: self.path.clone(),
                source: e.into(),
            },
        })
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets `f`
    /// opens stay bound to the namespace after the thread ends.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetlinkError> {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| self.enter().map(|()| f()));
            worker.join().unwrap_or_else(|_| {
                Err(NetlinkError::NetnsThread {
                    path: self.path.clone(),
                })
            })
        })
    }

    /// Whether this is the namespace the calling thread is in: a runtime
    /// bug (or a mistyped path) that would put the pod's interface on the
    /// node itself.
    pub fn is_current(&self) -> Result<bool, NetlinkError> {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata("/proc/thread-self/ns/net").map_err(|source| {
            NetlinkError::NetnsOpen {
                path: PathBuf::from("/proc/thread-self/ns/net"),
                source,
            }
        })?;
        let this = self
            .file
            .metadata()
            .map_err(|source| NetlinkError::NetnsOpen {
                path: self.path.clone(),
                source,
            })?;
        Ok(own.dev() == this.dev() && own.ino() == this.ino())
    }

    /// A netlink socket inside this namespace.
    pub fn netlink(&self) -> Result<Netlink, NetlinkError> {
        self.run(Netlink::open)?
    }

    /// A netlink socket inside this namespace, opened by the calling thread
    /// itself: it enters the namespace and comes straight back, two system
    /// calls instead of a thread. On an error the thread may be left in
    /// this namespace (`NetnsReturn`), so it is for a caller that then
    /// gives up, as the plugin's verbs do.
    pub fn netlink_in_place(&self) -> Result<Netlink, NetlinkError> {
        const OWN: &str = "/proc/thread-self/ns/net";
        let own = File::open(OWN).map_err(|source| NetlinkError::NetnsOpen {
            path: PathBuf::from(OWN),
            source,
        })?;
        self.enter()?;
        let opened = Netlink::open();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError::NetnsReturn {
            path: self.path.clone(),
            source: e.into(),
        })?;
        opened
    }
}
