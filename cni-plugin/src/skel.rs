//! Environment and stdin to typed arguments; one verb dispatched; exactly
//! one JSON document printed on stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd;
use crate::error::{EnvError, PluginError};
use crate::spec::{
    CniResult, CniVersion, ConfigError, ErrorReply, IfName, NetConf, VersionRequest,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

/// The `CNI_*` environment, checked once.
#[derive(Clone, Debug)]
pub struct Args {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<IfName>,
    pub cni_args: Option<String>,
    pub cni_path: Vec<PathBuf>,
}

impl Args {
    /// Reads the variables through `get`, so tests need no real environment.
    pub fn from_env(get: impl Fn(&str) -> Option<OsString>) -> Result<Self, EnvError> {
        // An empty variable counts as unset: containerd's second DEL passes
        // `CNI_NETNS=`.
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let text = |k: &str| var(k).map(|v| v.to_string_lossy().into_owned());

        let command_text = text("CNI_COMMAND").ok_or(EnvError::Missing(vec!["CNI_COMMAND"]))?;
        let command =
            Command::parse(&command_text).ok_or(EnvError::UnknownCommand(command_text))?;

        // Which variables each verb needs, as the spec's table has it.
        use Command::*;
        let needs: &[(&'static str, &[Command])] = &[
            ("CNI_CONTAINERID", &[Add, Del, Check]),
            ("CNI_NETNS", &[Add, Check]),
            ("CNI_IFNAME", &[Add, Del, Check]),
            ("CNI_PATH", &[Add, Del, Check, Status, Gc]),
        ];
        let missing: Vec<&'static str> = needs
            .iter()
            .filter(|(k, verbs)| verbs.contains(&command) && var(k).is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            return Err(EnvError::Missing(missing));
        }

        let container_id = text("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            if !valid_container_id(id) {
                return Err(EnvError::BadContainerId(id.clone()));
            }
        }
        let ifname = match text("CNI_IFNAME") {
            Some(name) => Some(IfName::try_from(name.as_str()).map_err(EnvError::BadIfName)?),
            None => None,
        };
        let cni_path = var("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        Ok(Self {
            command,
            container_id,
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname,
            cni_args: text("CNI_ARGS"),
            cni_path,
        })
    }

    /// CNI_CONTAINERID; `from_env` guarantees it for ADD, DEL and CHECK.
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    /// CNI_IFNAME; `from_env` guarantees it for ADD, DEL and CHECK.
    pub fn ifname(&self) -> &str {
        self.ifname.as_ref().map(|i| i.as_str()).unwrap_or_default()
    }
}

fn valid_container_id(id: &str) -> bool {
    podnet_ipam::ident::is_cni_identifier(id)
}

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
    pub add: fn(&Args, &NetConf, &[u8]) -> Result<CniResult, PluginError>,
    pub del: fn(&Args, &NetConf, &[u8]) -> Result<(), PluginError>,
    pub check: fn(&Args, &NetConf, &[u8]) -> Result<(), PluginError>,
    pub status: fn(&Args, &NetConf, &[u8]) -> Result<(), PluginError>,
    pub gc: fn(&Args, &NetConf, &[u8]) -> Result<(), PluginError>,
    /// Told how long each ADD and DEL took and whether it worked.
    pub report: Option<fn(&NetConf, Command, std::time::Duration, bool)>,
}

/// The `podnet` plugin.
pub const PODNET: Plugin = Plugin {
    parse: NetConf::parse,
    add: cmd::add::add,
    del: cmd::del::del,
    check: cmd::check::check,
    status: cmd::status::status,
    gc: cmd::gc::gc,
    report: Some(crate::ipam::report),
};

/// The whole plugin: parse once, dispatch, print once.
pub fn run(plugin: &Plugin) -> ExitCode {
    crate::logging::init();
    let mut stdin = Vec::new();
    let outcome = Args::from_env(|k: &str| std::env::var_os(k))
        .map_err(PluginError::from)
        .and_then(|args| {
            std::io::stdin()
                .read_to_end(&mut stdin)
                .map_err(PluginError::Stdin)?;
            Ok(args)
        });
    let (reply, version) = match outcome {
        Ok(args) => dispatch(plugin, &args, &stdin),
        Err(e) => (Err(e), None),
    };
    print_reply(reply, version)
}

/// Runs one verb. Returns the reply and, when the configuration was read,
/// its version (error replies are written in it).
pub fn dispatch(
    plugin: &Plugin,
    args: &Args,
    stdin: &[u8],
) -> (Result<Reply, PluginError>, Option<CniVersion>) {
    if args.command == Command::Version {
        return (
            VersionRequest::parse(stdin)
                .map_err(PluginError::from)
                .map(|req| Reply::Json(cmd::version::version(req.cni_version.as_deref()))),
            None,
        );
    }
    let conf = match (plugin.parse)(stdin) {
        Ok(c) => c,
        // DEL must succeed to the fullest extent: a prevResult it cannot
        // read is no reason to leave the pod's resources behind.
        Err(ConfigError::PrevResult(e)) if args.command == Command::Del => {
            tracing::warn!(error = %e, "DEL ignores an unreadable prevResult");
            match without_prev_result(plugin, stdin) {
                Ok(c) => c,
                Err(e) => return (Err(e.into()), None),
            }
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
    let reply = match args.command {
        Command::Add => {
            (plugin.add)(args, &conf, stdin).map(|r| Reply::Json(r.to_json(conf.cni_version)))
        }
        Command::Del => (plugin.del)(args, &conf, stdin).map(|()| Reply::Nothing),
        Command::Check => (plugin.check)(args, &conf, stdin).map(|()| Reply::Nothing),
        Command::Status => (plugin.status)(args, &conf, stdin).map(|()| Reply::Nothing),
        Command::Gc => (plugin.gc)(args, &conf, stdin).map(|()| Reply::Nothing),
        Command::Version => Ok(Reply::Json(cmd::version::version(None))),
    };
    if let Err(e) = &reply {
        tracing::warn!(code = e.code().0, error = %e, "failed");
    }
    if let (Some(report), Command::Add | Command::Del) = (plugin.report, args.command) {
        report(&conf, args.command, started.elapsed(), reply.is_ok());
    }
    (reply, Some(conf.cni_version))
}

fn without_prev_result(plugin: &Plugin, stdin: &[u8]) -> Result<NetConf, ConfigError> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(stdin).map_err(ConfigError::Malformed)?;
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("prevResult");
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
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn add_needs_its_variables() {
        let err = Args::from_env(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH"
        );
    }

    #[test]
    fn del_accepts_empty_netns() {
        let args = Args::from_env(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]))
        .unwrap();
        assert_eq!(args.netns, None);
        assert_eq!(args.cni_path.len(), 2);
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/bin"),
        ];
        let with = |k: &str, v: &str| {
            let mut e: Vec<(&str, &str)> = base.iter().filter(|(x, _)| *x != k).cloned().collect();
            let leaked: &'static str = Box::leak(v.to_string().into_boxed_str());
            let key: &'static str = Box::leak(k.to_string().into_boxed_str());
            e.push((key, leaked));
            Args::from_env(env(&e))
        };
        assert!(matches!(
            with("CNI_COMMAND", "FROB"),
            Err(EnvError::UnknownCommand(_))
        ));
        assert!(matches!(
            with("CNI_CONTAINERID", "-bad"),
            Err(EnvError::BadContainerId(_))
        ));
        assert!(matches!(
            with("CNI_CONTAINERID", "a/b"),
            Err(EnvError::BadContainerId(_))
        ));
        assert!(matches!(
            with("CNI_IFNAME", "a/b"),
            Err(EnvError::BadIfName(_))
        ));
        assert!(matches!(
            with("CNI_IFNAME", "sixteen-bytes-xx"),
            Err(EnvError::BadIfName(_))
        ));
        assert!(with("CNI_CONTAINERID", "Ab9_.-x").is_ok());
    }

    #[test]
    fn version_needs_nothing_but_the_command() {
        let args = Args::from_env(env(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(args.command, Command::Version);
    }
}
