//! At SIGTERM: is podnet being uninstalled (clean the node up) or only
//! restarted (keep everything)? Its DaemonSet says.

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::Api;

use super::{call, KubeBackend, KubeError};

impl KubeBackend {
    /// Whether podnet is being removed from the cluster, asked of its
    /// DaemonSet `namespace/name` (see [`Removal`]).
    pub async fn removal(&self, daemonset: &str) -> Removal {
        let Some((namespace, name)) = daemonset.split_once('/') else {
            return Removal::Unknown(format!("{daemonset:?} is not NAMESPACE/NAME"));
        };
        let api: Api<DaemonSet> = Api::namespaced(self.nodes.clone().into_client(), namespace);
        let answer = call("reading podnet's DaemonSet", api.get_opt(name))
            .await
            .map(|ds| ds.map(|ds| ds.metadata.deletion_timestamp.is_some()));
        Removal::from_answer(answer.as_ref().copied())
    }
}

/// What podnetd's DaemonSet says at SIGTERM.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// podnet is being uninstalled: the DaemonSet is gone or being deleted,
    /// or the API refuses podnetd's own credentials (its ServiceAccount or
    /// RBAC, deleted by the same `kubectl delete -f`).
    Requested(String),
    /// The DaemonSet stays: a restart or a rolling update.
    NotRequested,
    /// The API could not be asked: keep everything (the safe guess).
    Unknown(String),
}

impl Removal {
    /// The decision from the answer to `GET` of the DaemonSet.
    pub fn from_answer(answer: Result<Option<bool>, &KubeError>) -> Self {
        match answer {
            Ok(None) => Self::Requested("the DaemonSet is gone".into()),
            Ok(Some(true)) => Self::Requested("the DaemonSet is being deleted".into()),
            Ok(Some(false)) => Self::NotRequested,
            Err(e) => match e.api_code() {
                Some(code @ (401 | 403)) => Self::Requested(format!(
                    "the API refuses podnetd's credentials ({code}): its ServiceAccount or RBAC was removed"
                )),
                _ => Self::Unknown(e.to_string()),
            },
        }
    }
}
