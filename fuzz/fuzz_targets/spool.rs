//! A spool record (a file anyone with root could have written): never a
//! panic, only valid keys come out, and a record podnet writes reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_ipam::spool::parse_record;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = parse_record(data) {
        assert!(key.validate().is_ok(), "{key:?}");
        let bytes = serde_json::to_vec(&key).expect("a key serialises");
        assert_eq!(parse_record(&bytes).as_ref(), Ok(&key));
    }
});
