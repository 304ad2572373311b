//! Environment and stdin to typed arguments; one verb dispatched; exactly
//! one JSON document printed on stdout.

use std::io::{Read, Write};
use std::process::ExitCode;

use crate::args::{CmdArgs, Command};
use crate::error::PluginError;
use crate::spec::{
    version_reply, CniResult, CniVersion, ConfigError, ErrorReply, NetConf, VersionRequest,
};

/// What a verb prints on success.
pub enum Reply {
    Json(serde_json::Value),
    Nothing,
}

/// What one plugin binary does for each verb: `podnet` and `podnet-ipam`
/// share the rest of the skeleton.
pub struct Plugin {
    /// Reads the network configuration from stdin.
    pub parse: fn(&[u8]) -> Result<NetConf, ConfigError>,
    pub add: fn(&CmdArgs, &NetConf) -> Result<CniResult, PluginError>,
    pub del: fn(&CmdArgs, &NetConf) -> Result<(), PluginError>,
    pub check: fn(&CmdArgs, &NetConf) -> Result<(), PluginError>,
    pub status: fn(&CmdArgs, &NetConf) -> Result<(), PluginError>,
    pub gc: fn(&CmdArgs, &NetConf) -> Result<(), PluginError>,
    /// Told how long each ADD and DEL took and whether it worked.
    pub report: Option<fn(&NetConf, Command, std::time::Duration, bool)>,
}

/// The whole plugin: parse once, dispatch, print once.
pub fn run(plugin: &Plugin) -> ExitCode {
    crate::logging::init();
    let outcome = CmdArgs::from_env(|k: &str| std::env::var_os(k))
        .map_err(PluginError::from)
        .and_then(|args| {
            let mut stdin = Vec::new();
            std::io::stdin()
                .read_to_end(&mut stdin)
                .map_err(PluginError::Stdin)?;
            Ok(args.with_stdin(stdin))
        });
    let (reply, version) = match outcome {
        Ok(args) => dispatch(plugin, &args),
        Err(e) => (Err(e), None),
    };
    print_reply(reply, version)
}

/// Runs one verb. Returns the reply and, when the configuration was read,
/// its version (error replies are written in it).
pub fn dispatch(
    plugin: &Plugin,
    args: &CmdArgs,
) -> (Result<Reply, PluginError>, Option<CniVersion>) {
    if args.command == Command::Version {
        return (
            VersionRequest::parse(&args.stdin)
                .map_err(PluginError::from)
                .map(|req| Reply::Json(version_reply(req.cni_version.as_deref()))),
            None,
        );
    }
    let conf = match (plugin.parse)(&args.stdin) {
        Ok(c) => c,
        // DEL must succeed to the fullest extent: a prevResult it cannot
        // read is no reason to leave the pod's resources behind.
        Err(ConfigError::PrevResult(e)) if args.command == Command::Del => {
            tracing::warn!(error = %e, "DEL ignores an unreadable prevResult");
            match without_key(plugin, &args.stdin, "prevResult") {
                Ok(c) => c,
                Err(e) => return (Err(e.into()), None),
            }
        }
        // Nor is an ipam section this binary cannot read (a cached
        // configuration of another version, say): the links go, and the
        // section's error is still the answer, so the runtime retries.
        Err(e) if args.command == Command::Del && e.in_ipam_section() => {
            if let Ok(conf) = without_key(plugin, &args.stdin, "ipam") {
                if let Err(links) = (plugin.del)(args, &conf) {
                    tracing::warn!(error = %links, "DEL without the ipam section");
                }
            }
            return (Err(e.into()), None);
        }
        Err(e) => return (Err(e.into()), None),
    };
    let span = tracing::info_span!(
        "cni",
        verb = args.command.as_str(),
        container = args.container_id(),
        ifname = args.ifname(),
    );
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let reply = if args.command.exists_in(conf.cni_version) {
        run_verb(plugin, args, &conf)
    } else {
        Err(PluginError::VerbNotInVersion {
            verb: args.command.as_str(),
            version: conf.cni_version.as_str(),
        })
    };
    if let Err(e) = &reply {
        tracing::warn!(code = e.code().0, error = %e, "failed");
    }
    if let (Some(report), Command::Add | Command::Del) = (plugin.report, args.command) {
        report(&conf, args.command, started.elapsed(), reply.is_ok());
    }
    (reply, Some(conf.cni_version))
}

fn run_verb(plugin: &Plugin, args: &CmdArgs, conf: &NetConf) -> Result<Reply, PluginError> {
    match args.command {
        Command::Add => (plugin.add)(args, conf).map(|r| Reply::Json(r.to_json(conf.cni_version))),
        Command::Del => (plugin.del)(args, conf).map(|()| Reply::Nothing),
        Command::Check => (plugin.check)(args, conf).map(|()| Reply::Nothing),
        Command::Status => (plugin.status)(args, conf).map(|()| Reply::Nothing),
        Command::Gc => (plugin.gc)(args, conf).map(|()| Reply::Nothing),
        Command::Version => Ok(Reply::Json(version_reply(None))),
    }
}

/// The configuration read again without `key`.
fn without_key(plugin: &Plugin, stdin: &[u8], key: &str) -> Result<NetConf, ConfigError> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(stdin).map_err(ConfigError::Malformed)?;
    if let Some(obj) = doc.as_object_mut() {
        obj.remove(key);
    }
    (plugin.parse)(doc.to_string().as_bytes())
}

fn print_reply(reply: Result<Reply, PluginError>, version: Option<CniVersion>) -> ExitCode {
    let (text, code) = match reply {
        Ok(Reply::Json(doc)) => (doc.to_string(), ExitCode::SUCCESS),
        Ok(Reply::Nothing) => (String::new(), ExitCode::SUCCESS),
        Err(e) => {
            let v = version.unwrap_or(CniVersion::LATEST);
            let reply = ErrorReply::new(v.as_str(), e.code(), e.to_string(), e.details());
            (reply.to_json(), ExitCode::FAILURE)
        }
    };
    let mut out = std::io::stdout().lock();
    if !text.is_empty() {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ErrorCode;

    fn refuse(_: &CmdArgs, _: &NetConf) -> Result<(), PluginError> {
        Err(PluginError::NoValidAttachments)
    }

    /// Every verb but ADD answers code 7 (NoValidAttachments), so a reply
    /// of code 1 can only come from the skeleton's gate.
    const PROBE: Plugin = Plugin {
        parse: NetConf::parse,
        add: |_, _| Err(PluginError::NoIpam),
        del: refuse,
        check: refuse,
        status: refuse,
        gc: refuse,
        report: None,
    };

    fn run(verb: &str, version: &str) -> Result<Reply, PluginError> {
        let env = |k: &str| match k {
            "CNI_COMMAND" => Some(verb.into()),
            "CNI_CONTAINERID" => Some("c1".into()),
            "CNI_NETNS" => Some("/run/netns/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/opt/cni/bin".into()),
            _ => None,
        };
        let conf = format!(
            r#"{{"cniVersion":"{version}","name":"n","type":"podnet","ipam":{{"type":"host-local"}}}}"#
        );
        let args = CmdArgs::from_env(env)
            .unwrap()
            .with_stdin(conf.into_bytes());
        dispatch(&PROBE, &args).0
    }

    fn code(reply: Result<Reply, PluginError>) -> u32 {
        reply.err().map(|e| e.code().0).unwrap_or(0)
    }

    #[test]
    fn verbs_a_version_lacks_are_refused_before_the_plugin_runs() {
        for (verb, version, want) in [
            ("CHECK", "0.3.1", ErrorCode::INCOMPATIBLE_VERSION),
            ("CHECK", "0.4.0", ErrorCode::INVALID_CONFIG),
            ("STATUS", "1.0.0", ErrorCode::INCOMPATIBLE_VERSION),
            ("STATUS", "1.1.0", ErrorCode::INVALID_CONFIG),
            ("GC", "1.0.0", ErrorCode::INCOMPATIBLE_VERSION),
            ("GC", "1.1.0", ErrorCode::INVALID_CONFIG),
            ("DEL", "0.3.0", ErrorCode::INVALID_CONFIG),
            ("ADD", "0.3.0", ErrorCode::INVALID_CONFIG),
        ] {
            assert_eq!(code(run(verb, version)), want.0, "{verb} at {version}");
        }
    }
}
