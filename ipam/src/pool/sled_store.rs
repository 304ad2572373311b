//! The daemon's store: allocations in its sled database.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::attachment::{Allocation, AttachmentKey};
use crate::error::IpamError;

use super::store::PoolStore;

/// Tree holding attachment key -> allocation (JSON).
pub const TREE_ALLOC: &str = "pool.alloc";
/// Tree holding address (4 or 16 octets) -> attachment key.
pub const TREE_OWNER: &str = "pool.owner";
/// Tree holding range (`10.244.1.0/24`) -> last address handed out (4 or 16 octets).
pub const TREE_CURSOR: &str = "pool.cursor";

/// Allocations in the daemon's sled database, in three trees ([`TREE_ALLOC`], [`TREE_OWNER`],
/// [`TREE_CURSOR`]) changed together in one transaction, so a crash never leaves an address owned
/// without its allocation or the reverse.
///
/// Attachment keys are stored as an 8-byte big-endian length of the container id, the container
/// id, then the interface name: unambiguous whatever bytes either holds.
#[derive(Debug)]
pub struct SledPoolStore {
    db: sled::Db,
    allocs: sled::Tree,
    owners: sled::Tree,
    cursors: sled::Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<IpamError>>;

impl SledPoolStore {
    pub fn open(db: &sled::Db) -> Result<Self, IpamError> {
        Ok(Self {
            db: db.clone(),
            allocs: db.open_tree(TREE_ALLOC)?,
            owners: db.open_tree(TREE_OWNER)?,
            cursors: db.open_tree(TREE_CURSOR)?,
        })
    }

    fn from_tx<T>(result: Result<T, TransactionError<IpamError>>) -> Result<T, IpamError> {
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => IpamError::Store(e),
        })
    }

    /// Drops the owner entries of `key`'s current allocation, if any.
    fn tx_forget(
        allocs: &TransactionalTree,
        owners: &TransactionalTree,
        key: &AttachmentKey,
        key_bytes: &[u8],
    ) -> TxResult<Option<Allocation>> {
        let Some(old) = allocs.remove(key_bytes)? else {
            return Ok(None);
        };
        let old = decode_alloc(key, &old).map_err(ConflictableTransactionError::Abort)?;
        for ip in old.ips.iter().map(IpNetwork::ip) {
            let ip_bytes = encode_ip(ip);
            if owners.get(&ip_bytes)?.as_deref() == Some(key_bytes) {
                owners.remove(ip_bytes)?;
            }
        }
        Ok(Some(old))
    }
}

pub(super) fn encode_key(key: &AttachmentKey) -> Vec<u8> {
    let id = key.container_id.as_bytes();
    let mut out = Vec::with_capacity(8 + id.len() + key.ifname.len());
    out.extend_from_slice(&(id.len() as u64).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(key.ifname.as_bytes());
    out
}

pub(super) fn decode_key(bytes: &[u8]) -> Result<AttachmentKey, IpamError> {
    let corrupt = |reason: &str| IpamError::Corrupt {
        key: format!("attachment key {}", String::from_utf8_lossy(bytes)),
        reason: reason.to_string(),
    };
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("shorter than its length prefix"))?;
    let len = usize::try_from(u64::from_be_bytes(*len))
        .map_err(|_| corrupt("container id length overflows"))?;
    let (id, ifname) = rest
        .split_at_checked(len)
        .ok_or_else(|| corrupt("container id longer than the record"))?;
    Ok(AttachmentKey {
        container_id: String::from_utf8(id.to_vec())
            .map_err(|_| corrupt("container id is not UTF-8"))?,
        ifname: String::from_utf8(ifname.to_vec()).map_err(|_| corrupt("ifname is not UTF-8"))?,
    })
}

pub(super) fn encode_ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

pub(super) fn decode_ip(what: &str, bytes: &[u8]) -> Result<IpAddr, IpamError> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(octets))
    } else if let Ok(octets) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(octets))
    } else {
        Err(IpamError::Corrupt {
            key: what.to_string(),
            reason: format!("an address of {} bytes", bytes.len()),
        })
    }
}

fn decode_alloc(key: &AttachmentKey, bytes: &[u8]) -> Result<Allocation, IpamError> {
    serde_json::from_slice(bytes).map_err(|e| IpamError::Corrupt {
        key: format!("allocation {key}"),
        reason: e.to_string(),
    })
}

impl PoolStore for SledPoolStore {
    fn get(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        self.allocs
            .get(encode_key(key))?
            .map(|v| decode_alloc(key, &v))
            .transpose()
    }

    fn owner_of(&self, ip: IpAddr) -> Result<Option<AttachmentKey>, IpamError> {
        self.owners
            .get(encode_ip(ip))?
            .map(|v| decode_key(&v))
            .transpose()
    }

    fn cursor(&self, range: &IpNetwork) -> Result<Option<IpAddr>, IpamError> {
        self.cursors
            .get(range.to_string())?
            .map(|v| decode_ip(&format!("cursor of {range}"), &v))
            .transpose()
    }

    fn commit(&self, alloc: &Allocation, cursors: &[(IpNetwork, IpAddr)]) -> Result<(), IpamError> {
        let key_bytes = encode_key(&alloc.key);
        let value = serde_json::to_vec(alloc).map_err(|source| IpamError::Encode {
            what: "allocation",
            source,
        })?;
        let ips: Vec<(IpAddr, Vec<u8>)> = alloc
            .ips
            .iter()
            .map(|n| (n.ip(), encode_ip(n.ip())))
            .collect();
        let cursors: Vec<(String, Vec<u8>)> = cursors
            .iter()
            .map(|(range, ip)| (range.to_string(), encode_ip(*ip)))
            .collect();
        let result = (&self.allocs, &self.owners, &self.cursors).transaction(
            |(tx_allocs, tx_owners, tx_cursors)| {
                for (ip, ip_bytes) in &ips {
                    if let Some(owner) = tx_owners.get(ip_bytes)? {
                        if *owner != *key_bytes {
                            let owner =
                                decode_key(&owner).map_err(ConflictableTransactionError::Abort)?;
                            return Err(ConflictableTransactionError::Abort(
                                IpamError::AddressInUse { ip: *ip, owner },
                            ));
                        }
                    }
                }
                Self::tx_forget(tx_allocs, tx_owners, &alloc.key, &key_bytes)?;
                for (_, ip_bytes) in &ips {
                    tx_owners.insert(ip_bytes.as_slice(), key_bytes.as_slice())?;
                }
                tx_allocs.insert(key_bytes.as_slice(), value.as_slice())?;
                for (range, ip_bytes) in &cursors {
                    tx_cursors.insert(range.as_bytes(), ip_bytes.as_slice())?;
                }
                Ok(())
            },
        );
        Self::from_tx(result)
    }

    fn remove(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        let key_bytes = encode_key(key);
        let result = (&self.allocs, &self.owners).transaction(|(tx_allocs, tx_owners)| {
            Self::tx_forget(tx_allocs, tx_owners, key, &key_bytes)
        });
        Self::from_tx(result)
    }

    fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        self.allocs
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                decode_alloc(&decode_key(&k)?, &v)
            })
            .collect()
    }

    fn flush(&self) -> Result<(), IpamError> {
        self.db.flush()?;
        Ok(())
    }
}
