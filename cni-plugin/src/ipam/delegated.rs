//! IPAM by delegation: the plugin named by `ipam.type`, run from CNI_PATH
//! with the complete configuration, as the reference plugins do.

use crate::args::{CmdArgs, Command};
use crate::delegate;
use crate::error::PluginError;
use crate::spec::{CniResult, CniVersion, IpamConf, NetConf};

/// IPAM ADD started: the plugin runs while the caller wires links.
pub struct PendingAdd {
    plugin: String,
    version: CniVersion,
    running: delegate::Running,
}

pub fn start_add(
    args: &CmdArgs,
    conf: &NetConf,
    ipam: &IpamConf,
) -> Result<PendingAdd, PluginError> {
    let running = delegate::spawn(&ipam.plugin_type, Command::Add, args, &args.stdin)
        .map_err(PluginError::Ipam)?;
    Ok(PendingAdd {
        plugin: ipam.plugin_type.clone(),
        version: conf.cni_version,
        running,
    })
}

impl PendingAdd {
    /// The addresses (and routes, dns) for this attachment.
    pub fn finish(self) -> Result<CniResult, PluginError> {
        let plugin = self.plugin;
        let doc = self
            .running
            .wait()
            .map_err(PluginError::Ipam)?
            .ok_or_else(|| PluginError::IpamNoAddress(plugin.clone()))?;
        let result =
            CniResult::from_json(&doc, self.version).map_err(|source| PluginError::IpamResult {
                plugin: plugin.clone(),
                source,
            })?;
        if result.ips.is_empty() {
            return Err(PluginError::IpamNoAddress(plugin));
        }
        Ok(result)
    }
}

/// Runs a verb whose success prints nothing: DEL, CHECK, STATUS, GC.
pub fn forward(verb: Command, args: &CmdArgs, ipam: &IpamConf) -> Result<(), PluginError> {
    delegate::exec(&ipam.plugin_type, verb, args, &args.stdin)
        .map(|_| ())
        .map_err(PluginError::Ipam)
}

/// STATUS and GC reach the IPAM plugin only when it speaks CNI 1.1: an
/// older plugin (host-local before 1.5, say) would answer "unknown
/// command", which is no statement about its readiness.
pub fn forward_if_supported(
    verb: Command,
    args: &CmdArgs,
    conf: &NetConf,
    ipam: &IpamConf,
) -> Result<(), PluginError> {
    let request = format!(r#"{{"cniVersion":"{}"}}"#, conf.cni_version);
    let info = delegate::exec(
        &ipam.plugin_type,
        Command::Version,
        args,
        request.as_bytes(),
    )
    .map_err(PluginError::Ipam)?;
    let speaks_1_1 = info
        .as_ref()
        .and_then(|d| d.get("supportedVersions"))
        .and_then(|v| v.as_array())
        .is_some_and(|vs| {
            vs.iter()
                .any(|v| v.as_str() == Some(CniVersion::V1_1_0.as_str()))
        });
    if !speaks_1_1 {
        tracing::debug!(plugin = %ipam.plugin_type, verb = verb.as_str(), "IPAM plugin predates CNI 1.1; not forwarded");
        return Ok(());
    }
    forward(verb, args, ipam)
}
