//! The frame every bench program shares (bench-cni, bench-cri, bench-ipam,
//! bench-routes, soak, crash-inject), so that they parse, check, measure
//! and report alike and their reports compare:
//! - [`cli`]: the options with one meaning everywhere (`--out`, `--quick`,
//!   `--concurrency`), flattened into each bench's clap options;
//! - [`main`] and [`Session`]: the root check, the cleanup on a signal or a
//!   panic, the run, and where its report goes;
//! - [`facts`]: the machine, build and load each report records;
//! - [`stats`]: nearest-rank percentiles and ratios;
//! - [`work`]: a work queue drained by threads, each op timed;
//! - [`markdown`]: the report writer.
//!
//! A bench's `main` is one line:
//!
//! ```ignore
//! fn main() -> ExitCode {
//!     bench::main::<Opts>("bench-ipam", run)
//! }
//! fn run(opts: &Opts, session: &Session) -> Result<String, String> { ... }
//! ```

pub mod cli;
pub mod facts;
pub mod markdown;
mod session;
pub mod stats;
pub mod work;

pub use cli::{BenchOpts, Common, Concurrency};
pub use markdown::{Markdown, Table};
pub use session::{main, Session};
pub use stats::Summary;
