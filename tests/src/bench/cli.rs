//! The options whose meaning is the same in every bench, and the parser
//! their counts share. Each bench's own options (clap derive) flatten
//! [`Common`]; a size that `--quick` cuts down says so with
//! `default_value_if("quick", "true", ...)`, so clap resolves it and
//! `--help` shows both defaults.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::Args;

/// Flattened into every bench's options.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Also write the Markdown report to FILE (it always goes to stdout;
    /// progress goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A short run with every size cut down, to check the bench end to end;
    /// its report says so, and its figures are not for the record. Sizes
    /// given explicitly still apply.
    #[arg(long)]
    pub quick: bool,
}

/// The worker threads (or clients) of a bench's concurrent phases.
#[derive(Args, Debug, Clone)]
pub struct Concurrency {
    /// Worker threads of the concurrent phases, sharing one work queue
    /// (more than the machine's CPUs adds queueing to the latencies).
    #[arg(long, default_value_t = 8, value_parser = count(1..=1024))]
    pub concurrency: usize,
}

/// What the frame needs from a bench's options.
pub trait BenchOpts: clap::Parser {
    fn common(&self) -> &Common;
}

/// The parser of a count option: an integer within `range` (clap's error
/// names the range).
pub fn count(range: RangeInclusive<u64>) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Opts {
        #[arg(long, default_value_t = 200, default_value_if("quick", "true", "10"),
              value_parser = count(1..=300))]
        pods: usize,
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000],
              default_value_if("quick", "true", "100"))]
        sizes: Vec<usize>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        concurrency: Concurrency,
    }

    fn parse(args: &[&str]) -> Result<Opts, clap::Error> {
        Opts::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn quick_changes_defaults_only() {
        let full = parse(&[]).unwrap();
        assert_eq!((full.pods, full.sizes.as_slice()), (200, &[1000, 5000][..]));
        assert!(!full.common.quick && full.common.out.is_none());
        assert_eq!(full.concurrency.concurrency, 8);
        let quick = parse(&["--quick"]).unwrap();
        assert_eq!((quick.pods, quick.sizes.as_slice()), (10, &[100][..]));
        let given = parse(&["--quick", "--pods", "50", "--sizes", "1,2"]).unwrap();
        assert_eq!((given.pods, given.sizes.as_slice()), (50, &[1, 2][..]));
    }

    #[test]
    fn counts_are_bounded() {
        assert!(parse(&["--pods", "0"]).is_err());
        assert!(parse(&["--pods", "301"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert_eq!(parse(&["--pods", "300"]).unwrap().pods, 300);
    }
}
