//! CNI protocol types (spec 1.1.0 and the older versions podnet still speaks).
//!
//! Pure data: parsing of the network configuration received on stdin, the
//! result and error documents written to stdout, and the version rules. No IO.

pub mod config;
pub mod error;
pub mod ifname;
pub mod ipam;
pub mod result;
pub mod version;

pub use config::{
    Attachment, ConfigError, NetConf, PortMapping, PortProtocol, RuntimeConfig, VersionRequest,
};
pub use error::{ErrorCode, ErrorReply};
pub use ifname::IfName;
pub use ipam::{IpamConf, IpamKind, NativeConf};
pub use result::{CniResult, Dns, Interface, IpConfig, ResultError, Route};
pub use version::{version_reply, CniVersion};
