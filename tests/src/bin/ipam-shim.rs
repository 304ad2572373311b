//! A test stand-in for a CNI 1.1 IPAM plugin. Debian's host-local (1.1.1)
//! predates CNI 1.1, so this shim speaks 1.1.0 to podnet and 1.0.0 to
//! host-local, whose results are valid 1.1.0 results. STATUS answers from
//! a file (`$SHIM_STATUS`: absent = ready, else its content is the error
//! code); every call is recorded in `$SHIM_LOG`; ADD prints
//! `$SHIM_ADD_RESULT`'s content instead when that is set, and DEL fails
//! with code 11 when `$SHIM_DEL_FAILS` is set.

use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};

use serde_json::{json, Value};

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let mut conf: Value = serde_json::from_slice(&stdin).unwrap_or(Value::Null);
    log(&format!(
        "{command} {}",
        conf.get("cni.dev/valid-attachments")
            .unwrap_or(&Value::Null)
    ));
    match command.as_str() {
        "VERSION" => {
            println!(
                "{}",
                json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
            );
            ExitCode::SUCCESS
        }
        "STATUS" => match std::env::var("SHIM_STATUS")
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            None => ExitCode::SUCCESS,
            Some(code) => {
                let code: u32 = code.trim().parse().unwrap_or(50);
                println!(
                    "{}",
                    json!({"cniVersion": "1.1.0", "code": code, "msg": "IPAM not ready"})
                );
                ExitCode::FAILURE
            }
        },
        "GC" => ExitCode::SUCCESS,
        // A scripted answer to ADD (`$SHIM_ADD_RESULT`: a file printed as
        // is), for testing what podnet does with a broken one.
        "ADD" if std::env::var_os("SHIM_ADD_RESULT").is_some() => {
            let path = std::env::var_os("SHIM_ADD_RESULT").unwrap_or_default();
            print!("{}", std::fs::read_to_string(path).unwrap_or_default());
            ExitCode::SUCCESS
        }
        "DEL" if std::env::var_os("SHIM_DEL_FAILS").is_some() => {
            println!(
                "{}",
                json!({"cniVersion": "1.1.0", "code": 11, "msg": "IPAM store unavailable"})
            );
            ExitCode::FAILURE
        }
        _ => {
            conf["cniVersion"] = json!("1.0.0");
            if let Some(prev) = conf.get_mut("prevResult") {
                prev["cniVersion"] = json!("1.0.0");
            }
            conf["ipam"]["type"] = json!("host-local");
            let mut child = Command::new("/usr/lib/cni/host-local")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run host-local");
            if let Some(mut pipe) = child.stdin.take() {
                let _ = pipe.write_all(conf.to_string().as_bytes());
            }
            let out = child.wait_with_output().expect("wait host-local");
            let mut reply: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if reply.is_object() {
                reply["cniVersion"] = json!("1.1.0");
                println!("{reply}");
            }
            if out.status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn log(line: &str) {
    if let Some(path) = std::env::var_os("SHIM_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
