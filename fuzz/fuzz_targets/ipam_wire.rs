//! The IPAM wire protocol: podnetd's request decoder (JSON and key checks)
//! and the plugin's response reader never panic, and whatever they accept
//! survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_ipam::proto::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        let line = serde_json::to_vec(&req).expect("a request serialises");
        assert_eq!(Request::decode(&line).as_ref(), Ok(&req));
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let line = serde_json::to_vec(&resp).expect("a response serialises");
        let again: Response = serde_json::from_slice(&line).expect("own response reads back");
        assert_eq!(again, resp);
    }
});
