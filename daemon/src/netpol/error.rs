//! Why a pod could not be placed under policy, or a sync failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the NetworkPolicies, Namespaces and Pods are not read from the API yet (waited {waited:?}); the pod would run unprotected")]
    NotSynced { waited: Duration },
    #[error("pod {pod} is not in the API: its labels, and so its policies, are unknown")]
    PodNotFound { pod: String },
    #[error("reading pod {pod} from the API to learn its labels")]
    ReadPod {
        pod: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("reading pod {pod} from the API to learn its labels: no answer in {after:?}")]
    ReadPodTimeout { pod: String, after: Duration },
    #[error("pod {pod} cannot be read as a policy target: {reason}")]
    Unreadable { pod: String, reason: String },
    #[error("writing the NetworkPolicy table: {0}")]
    Kernel(String),
    #[error("the NetworkPolicy table was not written in {waited:?}")]
    SyncTimeout { waited: Duration },
    #[error("podnet is being removed from this node")]
    Retired,
    #[error(transparent)]
    Explain(#[from] crate::policy::ExplainError),
    #[error("unknown protocol {0:?}: TCP, UDP or SCTP")]
    Protocol(String),
    #[error("encoding the answer: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("not a NetworkPolicy question")]
    NotAQuestion,
}
