//! Running a CNI plugin as a runtime does: environment, config on stdin,
//! inside the node's network namespace.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::netns::TestNetns;

/// One plugin invocation.
pub struct Invocation<'a> {
    pub plugin: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    /// `None` leaves CNI_NETNS unset; `Some("")` sets it empty.
    pub netns: Option<&'a str>,
    pub ifname: &'a str,
    pub cni_path: &'a str,
    pub stdin: &'a [u8],
    pub env: &'a [(&'a str, &'a str)],
}

#[derive(Debug)]
pub struct PluginOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl PluginOutput {
    /// The one JSON document on stdout (panics unless there is exactly one).
    pub fn json(&self) -> Value {
        let mut docs = serde_json::Deserializer::from_str(&self.stdout).into_iter::<Value>();
        let first = docs
            .next()
            .unwrap_or_else(|| panic!("no JSON on stdout; stderr: {}", self.stderr))
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout));
        assert!(
            docs.next().is_none(),
            "more than one document: {:?}",
            self.stdout
        );
        first
    }

    /// Asserts success; the result, or Null when nothing was printed.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "plugin failed: stdout {} stderr {}",
            self.stdout,
            self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a CNI error reply (exit 1, {code, msg}); returns it.
    pub fn err(&self) -> Value {
        assert_eq!(
            self.code,
            Some(1),
            "expected a CNI error: stdout {} stderr {}",
            self.stdout,
            self.stderr
        );
        let doc = self.json();
        assert!(doc["code"].is_u64(), "error reply without code: {doc}");
        assert!(
            doc["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error reply without msg: {doc}"
        );
        doc
    }

    pub fn err_code(&self) -> u64 {
        self.err()["code"].as_u64().unwrap_or_default()
    }
}

/// Runs the plugin from a thread inside `node`, so the process starts in
/// the node's namespace as it would under a runtime there.
pub fn exec(node: &TestNetns, inv: &Invocation<'_>) -> PluginOutput {
    node.run(|| exec_here(inv))
}

/// Runs the plugin in the calling thread's namespace.
pub fn exec_here(inv: &Invocation<'_>) -> PluginOutput {
    let mut cmd = Command::new(inv.plugin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_PATH", inv.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = inv.netns {
        cmd.env("CNI_NETNS", ns);
    }
    for (k, v) in inv.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", inv.plugin.display()));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(inv.stdin);
    }
    let out = child.wait_with_output().expect("wait for plugin");
    PluginOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
