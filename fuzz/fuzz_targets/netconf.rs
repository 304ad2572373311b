//! The network configuration on the plugin's stdin (and VERSION's), as
//! podnet and as an IPAM plugin read it: never a panic, and a `prevResult`
//! that was accepted reads back the same from podnet's own rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_cni::spec::{CniResult, NetConf, VersionRequest};

fuzz_target!(|data: &[u8]| {
    let _ = VersionRequest::parse(data);
    let _ = NetConf::parse_for_ipam(data);
    if let Ok(conf) = NetConf::parse(data) {
        if let Some(prev) = &conf.prev_result {
            let doc = prev.to_json(conf.cni_version);
            let again = CniResult::from_json(&doc, conf.cni_version)
                .unwrap_or_else(|e| panic!("own rendering {doc} refused: {e}"));
            assert_eq!(again.to_json(conf.cni_version), doc);
        }
    }
});
