//! podnet's own IPAM: a request to podnetd over its unix socket. The same
//! functions serve `podnet` (in process) and the `podnet-ipam` plugin.

use std::path::PathBuf;

use ipnetwork::IpNetwork;
use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::client::{Client, ClientError, PendingCall};
use podnet_ipam::proto::{ErrorKind, Request, Response, DEFAULT_SOCKET};
use podnet_ipam::spool::{Spool, DEFAULT_SPOOL_DIR};
use serde::Deserialize;

use crate::error::PluginError;
use crate::skel::Args;
use crate::spec::{CniResult, IpConfig, NetConf, Route};

pub const PLUGIN_TYPE: &str = "podnet-ipam";

/// The `ipam` section for `podnet-ipam`. Ours, so unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConf {
    #[serde(rename = "type")]
    _type: String,
    socket: Option<PathBuf>,
    spool_dir: Option<PathBuf>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dst: IpNetwork,
    gw: Option<std::net::IpAddr>,
}

#[derive(Debug)]
pub struct NativeConf {
    pub socket: PathBuf,
    pub spool_dir: PathBuf,
    pub routes: Vec<Route>,
}

impl NativeConf {
    pub fn parse(raw: &serde_json::Value) -> Result<Self, PluginError> {
        let conf = RawConf::deserialize(raw).map_err(|e| PluginError::IpamConfig {
            unknown_field: e.to_string().starts_with("unknown field"),
            message: e.to_string(),
        })?;
        Ok(Self {
            socket: conf.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            spool_dir: conf
                .spool_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
            routes: conf
                .routes
                .into_iter()
                .map(|r| Route::new(r.dst, r.gw))
                .collect(),
        })
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }
}

fn key(args: &Args) -> AttachmentKey {
    AttachmentKey {
        container_id: args.container_id().to_string(),
        ifname: args.ifname().to_string(),
    }
}

fn unexpected(resp: &Response) -> PluginError {
    PluginError::Daemon(ClientError::Daemon {
        kind: ErrorKind::Internal,
        message: format!("unexpected answer {resp:?}"),
    })
}

/// ADD: the addresses podnetd allocates (or already had) for this attachment.
pub fn add(args: &Args, conf: &NetConf, native: &NativeConf) -> Result<CniResult, PluginError> {
    start_add(args, conf, native)?.finish()
}

/// An ADD request sent to podnetd whose answer is still to be read.
pub struct PendingAdd {
    call: PendingCall,
    routes: Vec<Route>,
}

pub fn start_add(
    args: &Args,
    conf: &NetConf,
    native: &NativeConf,
) -> Result<PendingAdd, PluginError> {
    let req = Request::Add {
        key: key(args),
        netns: args.netns.as_ref().map(|p| p.display().to_string()),
        requested: requested_ips(conf)?,
    };
    let call = native.client().send(&req).map_err(PluginError::Daemon)?;
    Ok(PendingAdd {
        call,
        routes: native.routes.clone(),
    })
}

impl PendingAdd {
    pub fn finish(self) -> Result<CniResult, PluginError> {
        let allocation = match self.call.answer().map_err(PluginError::Daemon)? {
            Response::Allocated { allocation } => allocation,
            other => return Err(unexpected(&other)),
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

/// Static addresses asked for: the `ips` capability (`runtimeConfig.ips`)
/// or, by the CONVENTIONS, `args.cni.ips`.
fn requested_ips(conf: &NetConf) -> Result<Vec<std::net::IpAddr>, PluginError> {
    let mut ips: Vec<std::net::IpAddr> = conf.runtime_config.ips.iter().map(|n| n.ip()).collect();
    if let Some(list) = conf.raw.pointer("/args/cni/ips").and_then(|v| v.as_array()) {
        for v in list {
            let text = v.as_str().unwrap_or_default();
            let ip = text
                .split('/')
                .next()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| PluginError::IpamConfig {
                    unknown_field: false,
                    message: format!("args.cni.ips: {v} is not an IP address"),
                })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    Ok(ips)
}

/// DEL: released through the daemon, or spooled for it when it is down,
/// so DEL succeeds and the address still comes back.
pub fn del(args: &Args, native: &NativeConf) -> Result<(), PluginError> {
    let key = key(args);
    match native.client().call(&Request::Del { key: key.clone() }) {
        Ok(Response::Released { .. }) => Ok(()),
        Ok(other) => Err(unexpected(&other)),
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
pub fn check(args: &Args, conf: &NetConf, native: &NativeConf) -> Result<(), PluginError> {
    let key = key(args);
    let allocation = match native
        .client()
        .call(&Request::Check { key: key.clone() })
        .map_err(PluginError::Daemon)?
    {
        Response::Allocated { allocation } => allocation,
        Response::Unknown => {
            return Err(PluginError::Check(format!(
                "podnetd holds no addresses for {}/{}",
                key.container_id, key.ifname
            )))
        }
        other => return Err(unexpected(&other)),
    };
    if let Some(prev) = &conf.prev_result {
        for ip in &prev.ips {
            if !allocation.ips.contains(&ip.address) {
                return Err(PluginError::Check(format!(
                    "address {} is not allocated to {}/{} in podnetd",
                    ip.address, key.container_id, key.ifname
                )));
            }
        }
    }
    Ok(())
}

/// STATUS: ready once the daemon answers and knows the node's CIDR.
pub fn status(native: &NativeConf) -> Result<(), PluginError> {
    match native.client().call(&Request::Status) {
        Ok(Response::Status { ready: true, .. }) => Ok(()),
        Ok(Response::Status { detail, .. }) => Err(PluginError::NotReady(detail)),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(PluginError::NotReady(e.to_string())),
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
    match native
        .client()
        .call(&Request::Gc { valid })
        .map_err(PluginError::Daemon)?
    {
        Response::Collected { released } => {
            for a in &released {
                tracing::info!(container = %a.key.container_id, ifname = %a.key.ifname, "GC released");
            }
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

pub fn report(native: &NativeConf, verb: &str, took: std::time::Duration, ok: bool) {
    let req = Request::Report {
        verb: verb.to_string(),
        micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        ok,
    };
    let client = native
        .client()
        .with_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = client.call(&req) {
        tracing::debug!(error = %e, "could not report to podnetd");
    }
}
