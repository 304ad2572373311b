//! The deployment matches the code: RBAC grants exactly what the
//! kubernetes store calls, and every setting the DaemonSet passes is one
//! podnetd reads.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_yaml::Value;

fn manifests() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/podnet.yaml"
    ))
    .unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The item of the sequence `list` whose `key` is `value`.
fn named<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_sequence()
        .and_then(|items| items.iter().find(|i| i[key] == value))
        .unwrap_or_else(|| panic!("no item with {key}: {value}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn rbac_grants_exactly_what_the_code_calls() {
    let docs = manifests();
    let role = of_kind(&docs, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    let mut needed = BTreeSet::new();
    for (group, resource, verbs) in podnetd::store::kube::RBAC {
        for verb in *verbs {
            needed.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    assert_eq!(granted, needed, "ClusterRole vs podnetd::store::kube::RBAC");
    // Reading DaemonSets is limited to podnet's own, the one podnetd names.
    let ds = of_kind(&docs, "DaemonSet");
    let own = format!(
        "{}/{}",
        ds["metadata"]["namespace"].as_str().unwrap(),
        ds["metadata"]["name"].as_str().unwrap()
    );
    let env = &ds["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        named(env, "name", "PODNET_DAEMONSET")["value"].as_str(),
        Some(own.as_str())
    );
    for rule in role["rules"].as_sequence().unwrap() {
        if strings(&rule["resources"]) == ["daemonsets"] {
            assert_eq!(
                strings(&rule["resourceNames"]),
                [ds["metadata"]["name"].as_str().unwrap()]
            );
        }
    }
    // The binding gives that role to the DaemonSet's service account.
    let binding = of_kind(&docs, "ClusterRoleBinding");
    let ds = of_kind(&docs, "DaemonSet");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"],
        ds["spec"]["template"]["spec"]["serviceAccountName"]
    );
}

#[test]
fn daemonset_settings_are_flags_podnetd_knows() {
    let docs = manifests();
    let ds = of_kind(&docs, "DaemonSet");
    let help = std::process::Command::new(podnet_tests::bins::workspace_bin("podnetd"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let spec = &ds["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    for env in container["env"].as_sequence().unwrap() {
        let name = env["name"].as_str().unwrap();
        assert!(
            help.contains(&format!("env: {name}=")),
            "podnetd reads no {name}"
        );
    }
    // Runs everywhere, on the host network, with the node name from the downward API.
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["tolerations"][0]["operator"], "Exists");
    let node_name = named(&container["env"], "name", "PODNET_NODE_NAME");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // containerd's directory is mounted, not its socket file: a restarted
    // containerd's new socket shows up inside.
    let cri = named(&container["env"], "name", "PODNET_CRI_SOCKET")["value"]
        .as_str()
        .unwrap();
    let mount = named(&container["volumeMounts"], "name", "containerd");
    assert!(cri.starts_with(mount["mountPath"].as_str().unwrap()));
    assert_eq!(mount["mountPath"], "/run/containerd");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    let volume = named(&spec["volumes"], "name", "containerd");
    assert_eq!(volume["hostPath"]["type"], "Directory");
    // The init step installs the plugins with a subcommand podnetd has.
    let init = &spec["initContainers"][0]["command"];
    assert_eq!(init[1], "install");
    // The ConfigMap's cluster range is the kind config's podSubnet.
    let cm = of_kind(&docs, "ConfigMap");
    let kind: Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/kind-config.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cm["data"]["cluster-cidr"], kind["networking"]["podSubnet"]);
    assert_eq!(kind["networking"]["disableDefaultCNI"], true);
}
