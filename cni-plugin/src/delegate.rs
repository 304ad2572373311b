//! Running a delegated plugin (the IPAM plugin named by `ipam.type`) the
//! way a runtime would: found on `CNI_PATH`, given the complete network
//! configuration on stdin and the same environment, one verb overridden.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::args::{CmdArgs, Command as Verb};
use crate::spec::{ErrorCode, ErrorReply};

#[derive(Debug, thiserror::Error)]
pub enum DelegateError {
    #[error("plugin {plugin:?} not found in CNI_PATH {}", fmt_path(path))]
    NotFound { plugin: String, path: Vec<PathBuf> },
    #[error("running plugin {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The plugin answered with a CNI error: passed on with its own code.
    #[error("plugin {plugin}: {}", reply.msg)]
    Failed { plugin: String, reply: ErrorReply },
    #[error("plugin {plugin} printed no valid JSON ({status}): {stderr}")]
    BadOutput {
        plugin: String,
        status: String,
        stderr: String,
    },
}

impl DelegateError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Failed { reply, .. } => ErrorCode(reply.code),
            Self::NotFound { .. } | Self::Spawn { .. } | Self::BadOutput { .. } => ErrorCode::IPAM,
        }
    }

    pub fn details(&self) -> String {
        match self {
            Self::Failed { reply, .. } => reply.details.clone(),
            Self::NotFound { .. } | Self::Spawn { .. } | Self::BadOutput { .. } => String::new(),
        }
    }
}

fn fmt_path(path: &[PathBuf]) -> String {
    path.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The first executable file named `plugin` in the `CNI_PATH` directories.
pub fn find_plugin(plugin: &str, cni_path: &[PathBuf]) -> Result<PathBuf, DelegateError> {
    cni_path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| is_executable(p))
        .ok_or_else(|| DelegateError::NotFound {
            plugin: plugin.to_string(),
            path: cni_path.to_vec(),
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `plugin` for `command` and returns what it printed on success
/// (`None` when it printed nothing, as DEL may).
pub fn exec(
    plugin: &str,
    verb: Verb,
    args: &CmdArgs,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, DelegateError> {
    spawn(plugin, verb, args, stdin)?.wait()
}

/// A pipe holds at least one page even when the kernel shrinks pipes for a
/// user over its quota, so a document this small is written without
/// waiting for the plugin to read it.
const PIPE_MIN_CAPACITY: usize = 4096;

/// Starts `plugin` for `command` and returns while it runs, so the caller
/// can work meanwhile; [`Running::wait`] collects the answer.
pub fn spawn(
    plugin: &str,
    verb: Verb,
    args: &CmdArgs,
    stdin: &[u8],
) -> Result<Running, DelegateError> {
    let path = find_plugin(plugin, &args.cni_path)?;
    let mut cmd = Command::new(&path);
    cmd.env("CNI_COMMAND", verb.as_str())
        .env(
            "CNI_PATH",
            std::env::join_paths(&args.cni_path).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in [
        ("CNI_CONTAINERID", args.container_id.as_deref()),
        ("CNI_IFNAME", args.ifname.as_ref().map(|i| i.as_str())),
        ("CNI_ARGS", args.cni_args.as_deref()),
    ] {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    match &args.netns {
        Some(ns) => cmd.env("CNI_NETNS", ns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let mut child = cmd.spawn().map_err(|source| DelegateError::Spawn {
        path: path.clone(),
        source,
    })?;
    let writer = child.stdin.take().and_then(|mut pipe| {
        // A plugin that exits without reading its stdin is judged by its
        // output, not by the broken pipe. Dropping the pipe is its EOF.
        if stdin.len() <= PIPE_MIN_CAPACITY {
            let _ = pipe.write_all(stdin);
            None
        } else {
            let doc = stdin.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&doc);
            }))
        }
    });
    Ok(Running {
        plugin: plugin.to_string(),
        path,
        child,
        writer,
    })
}

/// A delegated plugin started by [`spawn`].
pub struct Running {
    plugin: String,
    path: PathBuf,
    child: std::process::Child,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Waits for the plugin and reads its answer.
    pub fn wait(self) -> Result<Option<serde_json::Value>, DelegateError> {
        let Running {
            plugin,
            path,
            child,
            writer,
        } = self;
        let out = child
            .wait_with_output()
            .map_err(|source| DelegateError::Spawn { path, source })?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let doc: Option<serde_json::Value> = if stdout.trim().is_empty() {
            None
        } else {
            serde_json::from_str(stdout.trim()).ok()
        };
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            if doc.is_none() && !stdout.trim().is_empty() {
                return Err(DelegateError::BadOutput {
                    plugin,
                    status: out.status.to_string(),
                    stderr,
                });
            }
            return Ok(doc);
        }
        match doc.as_ref().and_then(error_reply) {
            Some(reply) => Err(DelegateError::Failed { plugin, reply }),
            None => Err(DelegateError::BadOutput {
                plugin,
                status: out.status.to_string(),
                stderr,
            }),
        }
    }
}

/// Reads an error reply leniently: plugins of older spec versions leave out
/// `cniVersion` and `details`.
fn error_reply(doc: &serde_json::Value) -> Option<ErrorReply> {
    let code = doc.get("code")?.as_u64()?;
    let text = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(ErrorReply {
        cni_version: text("cniVersion"),
        code: u32::try_from(code).ok()?,
        msg: text("msg"),
        details: text("details"),
    })
}
