//! A small blocking CRI client (k8s-cri's v1 RuntimeService over tonic on
//! a unix socket), as the kubelet would drive containerd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StatusRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::PodSandboxState;

/// How long one call may take before the test fails instead of hanging.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What PodSandboxStatus says about a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub state: PodSandboxState,
    /// The pod IP ("" when the sandbox has none, e.g. once stopped).
    pub ip: String,
    pub additional_ips: Vec<String>,
    /// The network namespace from the verbose info's runtime spec
    /// (containerd's `cni-...`, pinned under its state dir), when asked
    /// verbosely.
    pub netns: Option<PathBuf>,
    /// The verbose `info` JSON, when asked verbosely.
    pub info: Option<serde_json::Value>,
}

/// One listed sandbox: id, name, state.
#[derive(Debug, Clone)]
pub struct ListedSandbox {
    pub id: String,
    pub name: String,
    pub state: PodSandboxState,
}

/// Cheap to clone: clones share the runtime and the connection, and may
/// call from several threads at once (a RunPodSandbox storm).
#[derive(Clone)]
pub struct CriClient {
    rt: Arc<tokio::runtime::Runtime>,
    client: RuntimeServiceClient<Channel>,
    socket: PathBuf,
}

impl CriClient {
    /// A client for `socket`; connects lazily (on the first call).
    pub fn new(socket: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.to_path_buf();
        let channel = {
            let _guard = rt.enter();
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
        };
        Self {
            rt: Arc::new(rt),
            client: RuntimeServiceClient::new(channel).max_decoding_message_size(64 << 20),
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn call<T, F>(
        &self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => {
                    Err(format!("{what}: {:?}: {}", status.code(), status.message()))
                }
                Err(_) => Err(format!("{what}: no answer in {CALL_TIMEOUT:?}")),
            }
        })
    }

    /// The runtime's name and version, e.g. ("containerd", "1.6.20~ds1").
    pub fn version(&self) -> Result<(String, String), String> {
        let r = self.call("Version", |mut c| async move {
            c.version(VersionRequest {
                version: "v1".into(),
            })
            .await
        })?;
        Ok((r.runtime_name, r.runtime_version))
    }

    /// The runtime's verbose Status `info`, each value parsed as JSON
    /// (containerd's `cniconfig` shows the CNI networks it loaded).
    pub fn status_info(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let r = self.call("Status", |mut c| async move {
            c.status(StatusRequest { verbose: true }).await
        })?;
        Ok(r.info
            .into_iter()
            .map(|(k, v)| {
                let parsed = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
                (k, parsed)
            })
            .collect())
    }

    /// RunPodSandbox for a pod `namespace/name` with `uid`; the sandbox id.
    pub fn run_pod_sandbox(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
    ) -> Result<String, String> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            ..Default::default()
        };
        let r = self.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })?;
        Ok(r.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(&self, id: &str, verbose: bool) -> Result<SandboxStatus, String> {
        let id = id.to_string();
        let r = self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose,
            })
            .await
        })?;
        let status = r.status.ok_or("PodSandboxStatus: no status")?;
        let network = status.network.unwrap_or_default();
        let info: Option<serde_json::Value> = r
            .info
            .get("info")
            .and_then(|text| serde_json::from_str(text).ok());
        let netns = info.as_ref().and_then(|i| {
            i["runtimeSpec"]["linux"]["namespaces"]
                .as_array()?
                .iter()
                .find(|n| n["type"] == "network")?["path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        Ok(SandboxStatus {
            id: status.id,
            state: PodSandboxState::try_from(status.state)
                .unwrap_or(PodSandboxState::SandboxNotready),
            ip: network.ip,
            additional_ips: network.additional_ips.into_iter().map(|p| p.ip).collect(),
            netns,
            info,
        })
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
                .await
        })
        .map(|_| ())
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        })
        .map(|_| ())
    }

    pub fn list_pod_sandbox(&self) -> Result<Vec<ListedSandbox>, String> {
        let r = self.call("ListPodSandbox", |mut c| async move {
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
        })?;
        Ok(r.items
            .into_iter()
            .map(|s| ListedSandbox {
                id: s.id,
                name: s.metadata.map(|m| m.name).unwrap_or_default(),
                state: PodSandboxState::try_from(s.state)
                    .unwrap_or(PodSandboxState::SandboxNotready),
            })
            .collect())
    }
}
