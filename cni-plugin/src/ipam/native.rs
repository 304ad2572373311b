//! podnet's own IPAM: a request to podnetd over its unix socket. The same
//! functions serve `podnet` (in process) and the `podnet-ipam` plugin.

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::client::{Client, ClientError, PendingCall};
use podnet_ipam::proto::{PodName, Request, Response};
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

/// ADD as the `podnet-ipam` plugin serves it: the addresses podnetd
/// allocates (or already had) for this attachment, answered once the
/// pod's NetworkPolicy is in place (an IPAM plugin cannot know when its
/// caller's ADD returns).
pub fn add(args: &CmdArgs, conf: &NetConf, native: &NativeConf) -> Result<CniResult, PluginError> {
    let answer = start_add(args, conf, native, Policy::Before)?.finish()?;
    match answer.policy {
        Some(policy) => policy.wait().map(|()| answer.result),
        None => Ok(answer.result),
    }
}

/// When podnetd answers an ADD of a pod under NetworkPolicy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Once its rules are in the kernel.
    Before,
    /// At once: the plugin asks [`Request::PolicyReady`] before its ADD
    /// returns, and configures the interface meanwhile.
    Alongside,
}

/// An ADD request sent to podnetd whose answer is still to be read.
pub struct PendingAdd {
    call: PendingCall,
    routes: Vec<Route>,
    client: Client,
    key: AttachmentKey,
    pod: Option<PodName>,
}

/// IPAM's answer to an ADD, and the pod's NetworkPolicy when podnetd is
/// still putting it in place.
pub struct Answer {
    pub result: CniResult,
    pub policy: Option<PolicyWait>,
}

/// The question whether a pod's NetworkPolicy is in place, asked; its
/// answer still to be read.
pub struct PolicyWait {
    call: PendingCall,
}

pub fn start_add(
    args: &CmdArgs,
    conf: &NetConf,
    native: &NativeConf,
    policy: Policy,
) -> Result<PendingAdd, PluginError> {
    let pod = args.pod();
    let req = Request::Add {
        key: key(args),
        netns: args.netns.as_ref().map(|p| p.display().to_string()),
        requested: conf.requested_ips()?,
        confirm_policy: pod.is_some() && policy == Policy::Alongside,
        pod: pod.clone(),
    };
    let client = client(native);
    let call = client.send(&req).map_err(PluginError::Daemon)?;
    Ok(PendingAdd {
        call,
        routes: native.routes.clone(),
        client,
        key: key(args),
        pod,
    })
}

impl PendingAdd {
    pub fn finish(self) -> Result<Answer, PluginError> {
        let (allocation, policy) = match self.call.answer().map_err(PluginError::Daemon)? {
            Response::Allocated { allocation } => (allocation, None),
            Response::Admitting { allocation } => {
                // Asked at once: podnetd answers when the rules are in,
                // while this plugin configures the interface.
                let pod = self.pod.ok_or_else(|| {
                    unexpected(
                        "ADD",
                        &Response::Admitting {
                            allocation: allocation.clone(),
                        },
                    )
                })?;
                let req = Request::PolicyReady { key: self.key, pod };
                let call = self.client.send(&req).map_err(PluginError::Daemon)?;
                (allocation, Some(PolicyWait { call }))
            }
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
        let result = CniResult {
            ips,
            routes: self.routes,
            ..Default::default()
        };
        Ok(Answer { result, policy })
    }
}

impl PolicyWait {
    /// Returns once the pod's rules are in the kernel; an error (code 11,
    /// the runtime tries again) when they cannot be.
    pub fn wait(self) -> Result<(), PluginError> {
        match self.call.answer().map_err(PluginError::Daemon)? {
            Response::PolicyReady => Ok(()),
            other => Err(unexpected("policy", &other)),
        }
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
    // Sent, not waited for: the verb's answer does not wait on metrics.
    let client = client(native).with_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = client.notify(&req) {
        tracing::debug!(error = %e, "could not report to podnetd");
    }
}
