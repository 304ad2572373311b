//! Logs go to stderr (stdout is the CNI protocol), or to the file named by
//! `PODNET_LOG_FILE`; the level comes from `PODNET_LOG` (default `warn`).

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

pub fn init() {
    let level = std::env::var("PODNET_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let file = std::env::var_os("PODNET_LOG_FILE")
        .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    // A second init (tests) is harmless; the first subscriber stays.
    let _ = match file {
        Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
