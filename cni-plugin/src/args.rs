//! The invocation: which verb, the `CNI_*` environment checked once, and
//! stdin.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::EnvError;
use crate::spec::{CniVersion, IfName};

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

    /// Whether a configuration of version `v` has this verb: CHECK came in
    /// 0.4.0, STATUS and GC in 1.1.0. Decided here once for every plugin.
    pub fn exists_in(self, v: CniVersion) -> bool {
        match self {
            Self::Check => v.has_check(),
            Self::Status | Self::Gc => v.has_status_and_gc(),
            Self::Add | Self::Del | Self::Version => true,
        }
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

/// One invocation: the `CNI_*` environment, checked once, and the bytes
/// read from stdin (what Go's skel calls `CmdArgs`).
#[derive(Clone, Debug)]
pub struct CmdArgs {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<IfName>,
    pub cni_args: Option<String>,
    pub cni_path: Vec<PathBuf>,
    /// The network configuration as the runtime sent it: delegated plugins
    /// get it byte for byte.
    pub stdin: Vec<u8>,
}

impl CmdArgs {
    /// Reads the variables through `get`, so tests need no real environment;
    /// stdin is attached afterwards ([`CmdArgs::with_stdin`]), once the
    /// environment has proved worth reading it for.
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
            stdin: Vec::new(),
        })
    }

    pub fn with_stdin(self, stdin: Vec<u8>) -> Self {
        Self { stdin, ..self }
    }

    /// CNI_CONTAINERID; `from_env` guarantees it for ADD, DEL and CHECK.
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    /// CNI_IFNAME; `from_env` guarantees it for ADD, DEL and CHECK.
    pub fn ifname(&self) -> &str {
        self.ifname.as_ref().map(|i| i.as_str()).unwrap_or_default()
    }

    /// The Kubernetes pod, from `K8S_POD_NAMESPACE` and `K8S_POD_NAME` in
    /// `CNI_ARGS` (`K1=V1;K2=V2`, as the kubelet's runtime passes them);
    /// `None` unless both are there. podnetd checks the names.
    pub fn pod(&self) -> Option<podnet_ipam::proto::PodName> {
        let pairs = self.cni_args.as_deref()?;
        let value = |key: &str| {
            pairs
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
                .filter(|v| !v.is_empty())
        };
        Some(podnet_ipam::proto::PodName {
            namespace: value("K8S_POD_NAMESPACE")?,
            name: value("K8S_POD_NAME")?,
        })
    }
}

fn valid_container_id(id: &str) -> bool {
    podnet_ipam::ident::is_cni_identifier(id)
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
        let err = CmdArgs::from_env(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH"
        );
    }

    #[test]
    fn the_pod_comes_from_cni_args_when_both_names_are_there() {
        let with = |cni_args: &str| {
            CmdArgs::from_env(env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
                ("CNI_ARGS", cni_args),
            ]))
            .unwrap()
            .pod()
            .map(|p| p.to_string())
        };
        // containerd's order and keys.
        assert_eq!(
            with("K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a-1"),
            Some("x/a-1".into())
        );
        assert_eq!(with("K8S_POD_NAME=a"), None);
        assert_eq!(with("K8S_POD_NAMESPACE=x;K8S_POD_NAME="), None);
        assert_eq!(
            with("garbage;K8S_POD_NAMESPACE=x;K8S_POD_NAME=b"),
            Some("x/b".into())
        );
    }

    #[test]
    fn del_accepts_empty_netns() {
        let args = CmdArgs::from_env(env(&[
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
            CmdArgs::from_env(env(&e))
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
        let args = CmdArgs::from_env(env(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(args.command, Command::Version);
    }
}
