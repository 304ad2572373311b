//! podnet IPAM (see issue 3).
