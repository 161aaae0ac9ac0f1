//! `novanet diagnose`: this host's checks, run here against its agent's plan, or with
//! `--host` another host's latest checks as its agent sent them to the server. Exit status
//! 1 when a check is wrong, 2 when there is nothing to check.

use std::path::{Path, PathBuf};

use clap::Args;
use novanet_agent::diagnose::{self, Check, Diagnosis};

use crate::client::Auth;
use crate::session::Session;

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// Show this host's latest checks as its agent reported them to the server (with the
    /// OS_* credentials of an admin), instead of checking the host this runs on
    #[arg(long)]
    host: Option<String>,
    /// The agent's state directory on this host [default: /var/lib/novanet/agent-HOSTNAME,
    /// or the only /var/lib/novanet/agent-* there is]
    #[arg(long, conflicts_with = "host")]
    state_dir: Option<PathBuf>,
    /// Print the checks as JSON
    #[arg(long)]
    json: bool,
}

/// A report older than this says the agent stopped reporting (it reports every 10 s).
const STALE_AFTER: i64 = 60;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn default_state_dir() -> Result<PathBuf, String> {
    let base = Path::new("/var/lib/novanet");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let own = base.join(format!("agent-{}", host.trim()));
    if own.join("plan.json").exists() {
        return Ok(own);
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
                && p.join("plan.json").exists()
        })
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "error: no agent state under {} (give --state-dir, the agent's)",
            base.display()
        )),
        _ => Err(format!(
            "error: several agents' state under {}: give --state-dir",
            base.display()
        )),
    }
}

/// This host, now.
fn local(state_dir: Option<PathBuf>) -> Result<Diagnosis, String> {
    let dir = match state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    let plan = diagnose::load_plan(&dir).map_err(|e| format!("error: {e}"))?;
    let facts = diagnose::gather(&plan, &dir);
    Ok(Diagnosis {
        host: plan.host.clone(),
        generation: plan.generation,
        at: now(),
        checks: diagnose::run_checks(&plan, &facts),
    })
}

/// Another host's latest report, from the server; a stale one is itself wrong.
fn remote(host: &str, auth: &Auth) -> Result<Diagnosis, String> {
    let s = Session::login(auth).map_err(|e| e.0)?;
    let v = s
        .get(&format!("/novanet/v1/hosts/{host}/diagnosis"))
        .map_err(|e| e.0)?;
    let mut d: Diagnosis = serde_json::from_value(v["diagnosis"].clone())
        .map_err(|e| format!("error: the server's diagnosis of {host} does not parse: {e}"))?;
    let at = v["reported_at"].as_i64().unwrap_or(0);
    let age = now() - at;
    d.checks.push(Check {
        check: "report".into(),
        subject: String::new(),
        ok: age <= STALE_AFTER,
        expected: format!("a report from the last {STALE_AFTER} s (the agent reports every 10 s)"),
        found: format!("reported {age} s ago"),
        fix: if age <= STALE_AFTER {
            String::new()
        } else {
            format!("start the agent on {host} (novanet agent --host {host} ...)")
        },
    });
    Ok(d)
}

/// Prints the checks; the exit status.
pub fn run(a: DiagnoseArgs, auth: &Auth) -> Result<i32, String> {
    let d = match &a.host {
        Some(h) => remote(h, auth)?,
        None => local(a.state_dir)?,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d).expect("serializable")
        );
    } else {
        print!("{}", d.text());
    }
    Ok(if d.wrong().next().is_some() { 1 } else { 0 })
}
