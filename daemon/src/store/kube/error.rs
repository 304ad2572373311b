//! What can go wrong talking to the Kubernetes API, and what each failure
//! means for a retry.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading the kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Box<kube::config::KubeconfigError>,
    },
    #[error("in-cluster Kubernetes config (no --kubeconfig given; is podnetd in a pod with a service account?): {0}")]
    InCluster(#[source] Box<kube::config::InClusterError>),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] Box<kube::Error>),
    #[error("Kubernetes API, {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Kubernetes API, {what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("there is no Node {0:?} (--node-name must be the Node's name, e.g. spec.nodeName from the downward API)")]
    NodeNotFound(String),
}

impl KubeError {
    /// 409 Conflict: the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        self.api_code() == Some(409)
    }

    /// The HTTP status of an error the API server answered with.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Self::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(response) => Some(response.code),
                // Failed on the way: connection, TLS, an unreadable body.
                _ => None,
            },
            Self::Kubeconfig { .. }
            | Self::InCluster(_)
            | Self::Client(_)
            | Self::Timeout { .. }
            | Self::NodeNotFound(_) => None,
        }
    }

    /// Worth retrying: no answer, a 5xx, or 429. Other 4xx (403: RBAC,
    /// 422: invalid) will not change by retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Api { .. } => match self.api_code() {
                Some(code) => code >= 500 || code == 429,
                // No answer: connection refused or reset, TLS, a bad body.
                None => true,
            },
            // This node's own configuration, or its Node missing: the same
            // again on every retry.
            Self::Kubeconfig { .. }
            | Self::InCluster(_)
            | Self::Client(_)
            | Self::NodeNotFound(_) => false,
        }
    }
}
