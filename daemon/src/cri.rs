//! Which pods exist, asked of the container runtime over its CRI socket:
//! the reclaimer's source of truth on a real node, where a pod can be gone
//! without its DEL ever having come (a runtime killed, its state wiped).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::ListPodSandboxRequest;
use tonic::transport::{Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("connecting to the CRI socket {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("ListPodSandbox on {}: {source}", socket.display())]
    Call {
        socket: PathBuf,
        #[source]
        source: tonic::Status,
    },
}

async fn client(
    socket: &Path,
) -> Result<RuntimeServiceClient<tonic::transport::Channel>, CriError> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    let endpoint =
        Endpoint::from_static("http://[::1]:50051").connect_timeout(Duration::from_secs(2));
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| CriError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok(RuntimeServiceClient::new(channel))
}

/// Awaits one CRI call with a deadline, errors named after the socket.
async fn call<T>(
    socket: &Path,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CriError> {
    let err = |source| CriError::Call {
        socket: socket.to_path_buf(),
        source,
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| err(tonic::Status::deadline_exceeded("no answer in 10 s")))?
        .map(tonic::Response::into_inner)
        .map_err(err)
}

/// The runtime's name and version (CRI Version), e.g. ("containerd", "1.6.20").
pub async fn runtime(socket: &Path) -> Result<(String, String), CriError> {
    let mut client = client(socket).await?;
    let reply = call(
        socket,
        client.version(k8s_cri::v1::VersionRequest {
            version: "v1".into(),
        }),
    )
    .await?;
    Ok((reply.runtime_name, reply.runtime_version))
}

/// The ids of every pod sandbox the runtime knows, ready or not (a CNI
/// container id is the sandbox id).
pub async fn sandbox_ids(socket: &Path) -> Result<HashSet<String>, CriError> {
    let mut client = client(socket).await?;
    let reply = call(
        socket,
        client.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
    )
    .await?;
    Ok(reply.items.into_iter().map(|s| s.id).collect())
}
