//! A CNI result of any version (a delegated IPAM plugin's answer, a
//! `prevResult`): never a panic; one that parses renders in every version
//! podnet speaks, and its 1.1.0 rendering reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_cni::spec::{CniResult, CniVersion};
use serde_json::Value;

const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(result) = CniResult::from_json(&doc, CniVersion::LATEST) else {
        return;
    };
    for v in VERSIONS.iter().filter_map(|v| CniVersion::parse(v)) {
        let _ = result.to_json(v);
    }
    let latest = result.to_json(CniVersion::LATEST);
    let again = CniResult::from_json(&latest, CniVersion::LATEST)
        .unwrap_or_else(|e| panic!("own rendering {latest} refused: {e}"));
    assert_eq!(again.to_json(CniVersion::LATEST), latest);
});
