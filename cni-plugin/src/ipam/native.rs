//! podnet's own IPAM: a request to podnetd over its unix socket. The same
//! functions serve `podnet` (in process) and the `podnet-ipam` plugin.

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::client::{Client, ClientError, PendingCall};
use podnet_ipam::proto::{Request, Response};
use podnet_ipam::spool::Spool;

use crate::args::CmdArgs;
use crate::error::{CheckFailure, PluginError};
use crate::spec::{CniResult, IpConfig, NativeConf, NetConf, Route};

fn client(native: &NativeConf) -> Client {
    Client::new(&native.socket)
}

fn key(args: &CmdArgs) -> AttachmentKey {
    AttachmentKey {
        container_id: args.container_id().to_string(),
        ifname: args.ifname().to_string(),
    }
}

fn unexpected(verb: &'static str, resp: &Response) -> PluginError {
    PluginError::UnexpectedAnswer {
        verb,
        answer: format!("{resp:?}"),
    }
}

/// ADD: the addresses podnetd allocates (or already had) for this attachment.
pub fn add(args: &CmdArgs, conf: &NetConf, native: &NativeConf) -> Result<CniResult, PluginError> {
    start_add(args, conf, native)?.finish()
}

/// An ADD request sent to podnetd whose answer is still to be read.
pub struct PendingAdd {
    call: PendingCall,
    routes: Vec<Route>,
}

pub fn start_add(
    args: &CmdArgs,
    conf: &NetConf,
    native: &NativeConf,
) -> Result<PendingAdd, PluginError> {
    let req = Request::Add {
        key: key(args),
        netns: args.netns.as_ref().map(|p| p.display().to_string()),
        requested: conf.requested_ips()?,
        pod: args.pod(),
    };
    let call = client(native).send(&req).map_err(PluginError::Daemon)?;
    Ok(PendingAdd {
        call,
        routes: native.routes.clone(),
    })
}

impl PendingAdd {
    pub fn finish(self) -> Result<CniResult, PluginError> {
        let allocation = match self.call.answer().map_err(PluginError::Daemon)? {
            Response::Allocated { allocation } => allocation,
            other => return Err(unexpected("ADD", &other)),
        };
        let ips = allocation
            .ips
            .iter()
            .enumerate()
            .map(|(i, address)| IpConfig {
                address: *address,
                gateway: allocation.gateways.get(i).copied(),
                interface: None,
            })
            .collect();
        Ok(CniResult {
            ips,
            routes: self.routes,
            ..Default::default()
        })
    }
}

/// DEL: released through the daemon, or spooled for it when it is down,
/// so DEL succeeds and the address still comes back.
pub fn del(args: &CmdArgs, native: &NativeConf) -> Result<(), PluginError> {
    let key = key(args);
    match client(native).call(&Request::Del { key: key.clone() }) {
        Ok(Response::Released { .. }) => Ok(()),
        Ok(other) => Err(unexpected("DEL", &other)),
        Err(ClientError::Unavailable { .. } | ClientError::Interrupted { .. }) => {
            tracing::warn!(spool = %native.spool_dir.display(), "podnetd unreachable; release spooled");
            Spool::new(&native.spool_dir)
                .record_release(&key)
                .map_err(PluginError::Spool)
        }
        Err(e) => Err(PluginError::Daemon(e)),
    }
}

/// CHECK: the daemon still holds every address prevResult lists.
pub fn check(args: &CmdArgs, conf: &NetConf, native: &NativeConf) -> Result<(), PluginError> {
    let AttachmentKey {
        container_id,
        ifname,
    } = key(args);
    let request = Request::Check { key: key(args) };
    let allocation = match client(native).call(&request).map_err(PluginError::Daemon)? {
        Response::Allocated { allocation } => allocation,
        Response::Unknown => {
            return Err(CheckFailure::NotAllocated {
                container_id,
                ifname,
            }
            .into())
        }
        other => return Err(unexpected("CHECK", &other)),
    };
    let prev_ips = conf.prev_result.iter().flat_map(|p| &p.ips);
    match prev_ips
        .map(|ip| ip.address)
        .find(|a| !allocation.ips.contains(a))
    {
        Some(address) => Err(CheckFailure::AddressNotAllocated {
            address,
            container_id,
            ifname,
        }
        .into()),
        None => Ok(()),
    }
}

/// STATUS: ready once the daemon answers and knows the node's CIDR.
pub fn status(native: &NativeConf) -> Result<(), PluginError> {
    match client(native).call(&Request::Status) {
        Ok(Response::Status { ready: true, .. }) => Ok(()),
        Ok(Response::Status { detail, .. }) => Err(PluginError::NotReady(detail)),
        Ok(other) => Err(unexpected("STATUS", &other)),
        Err(e) => Err(PluginError::StatusUnanswered(e)),
    }
}

/// GC: every allocation outside `cni.dev/valid-attachments` is released.
pub fn gc(conf: &NetConf, native: &NativeConf) -> Result<(), PluginError> {
    let valid = conf
        .valid_attachments
        .as_ref()
        .ok_or(PluginError::NoValidAttachments)?
        .iter()
        .map(|a| AttachmentKey {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        })
        .collect();
    match client(native)
        .call(&Request::Gc { valid })
        .map_err(PluginError::Daemon)?
    {
        Response::Collected { released } => {
            for a in &released {
                tracing::info!(container = %a.key.container_id, ifname = %a.key.ifname, "GC released");
            }
            Ok(())
        }
        other => Err(unexpected("GC", &other)),
    }
}

pub fn report(native: &NativeConf, verb: &str, took: std::time::Duration, ok: bool) {
    let req = Request::Report {
        verb: verb.to_string(),
        micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        ok,
    };
    let client = client(native).with_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = client.call(&req) {
        tracing::debug!(error = %e, "could not report to podnetd");
    }
}
