//! Logs: the `tracing` events of the server, the agent and the rest, written to standard
//! error (standard output belongs to the commands' tables and figures).

use clap::{Args, ValueEnum};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::session::GLOBAL_HEADING;

/// What is logged when neither `--log-level` nor `RUST_LOG` says.
const DEFAULT_FILTER: &str = "info";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    // No doc comments on the values: clap would switch every command's help to the long form.
    #[default]
    Human,
    Json,
}

// Every command takes these (clap's `global`), before or after the command's name. (No doc
// comment: clap would make it the about of every command.)
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct LogOptions {
    /// What to log: error, warn, info, debug, trace, or RUST_LOG's directives
    /// (novanet_agent=debug,info) [default: RUST_LOG, else info]
    #[arg(
        id = "log_level",
        long = "log-level",
        global = true,
        value_name = "LEVEL",
        value_parser = parse_filter
    )]
    pub level: Option<String>,
    /// How logs are written on standard error: human (a line per event) or json (an object per line)
    #[arg(
        id = "log_format",
        value_name = "FORMAT",
        long = "log-format",
        global = true,
        env = "NOVANET_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    pub format: LogFormat,
}

fn parse_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} (give a level such as info or debug, or target=level pairs)"))
}

/// The filter: `--log-level`, else `RUST_LOG`, else info. A `RUST_LOG` that does not parse
/// is reported on standard error and the default used, rather than silencing every log.
fn filter(level: Option<&str>) -> EnvFilter {
    if let Some(l) = level {
        return EnvFilter::new(l);
    }
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!(
                "warning: RUST_LOG={v} is not a log filter ({e}); logging at {DEFAULT_FILTER}"
            );
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    }
}

type Subscriber = Box<dyn tracing::Subscriber + Send + Sync>;

fn subscriber<W>(o: &LogOptions, writer: W) -> Subscriber
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(o.level.as_deref()))
        .with_writer(writer);
    match o.format {
        LogFormat::Human => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}

/// Makes the process's `tracing` events visible on standard error.
pub fn init(o: &LogOptions) {
    // Only fails if a subscriber is already set, which nothing else in the binary does.
    let _ = tracing::subscriber::set_global_default(subscriber(o, std::io::stderr));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn logged(o: &LogOptions) -> String {
        let buf = Buffer::default();
        tracing::subscriber::with_default(subscriber(o, buf.clone()), || {
            tracing::info!(host = "compute-1", "applied the plan");
            tracing::debug!("hidden at info");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn human_lines_at_the_level_asked() {
        let o = LogOptions {
            level: Some("info".into()),
            format: LogFormat::Human,
        };
        let text = logged(&o);
        assert!(text.contains("INFO"), "{text}");
        assert!(
            text.contains("applied the plan host=\"compute-1\""),
            "{text}"
        );
        assert!(!text.contains("hidden"), "{text}");
        let o = LogOptions {
            level: Some("debug".into()),
            ..o
        };
        assert!(logged(&o).contains("hidden at info"));
    }

    #[test]
    fn json_one_object_per_line() {
        let o = LogOptions {
            level: Some("info".into()),
            format: LogFormat::Json,
        };
        let text = logged(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "applied the plan");
        assert_eq!(v["fields"]["host"], "compute-1");
    }

    #[test]
    fn a_bad_level_is_refused() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("novanet_agent=debug,info").is_ok());
        assert!(parse_filter("novanet_agent=loud").is_err());
    }
}
