//! Running the host's tools. Every call names the tool, and a failure carries its stderr.

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug)]
pub enum AgentError {
    /// A tool ran and failed.
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A tool could not be started, or a file could not be written.
    Io(String),
    /// The server refused or could not be reached.
    Server(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Command {
                cmd,
                status,
                stderr,
            } => {
                write!(f, "`{cmd}` failed ({status}): {}", stderr.trim())
            }
            AgentError::Io(m) => write!(f, "{m}"),
            AgentError::Server(m) => write!(f, "server: {m}"),
        }
    }
}

impl std::error::Error for AgentError {}

pub type Result<T> = std::result::Result<T, AgentError>;

pub fn io_err(what: impl fmt::Display, e: std::io::Error) -> AgentError {
    AgentError::Io(format!("{what}: {e}"))
}

/// Runs `cmd args...`, feeding `input` on stdin when given; returns stdout.
pub fn run(cmd: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let line = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_err(format!("cannot run {cmd} (is it installed?)"), e))?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| io_err(&line, e))?;
    }
    let out = child.wait_with_output().map_err(|e| io_err(&line, e))?;
    if !out.status.success() {
        return Err(AgentError::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends a signal to a process we started, by PID.
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    run("kill", &[&format!("-{sig}"), &pid.to_string()], None).map(|_| ())
}

/// The command line of a live process (NUL-separated arguments), if it exists.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie (state Z) keeps its cmdline on some kernels; it is not running.
    if stat
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'))
    {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Reads a sysctl and writes it only if it differs.
pub fn ensure_sysctl(path: &str, value: &str) -> Result<()> {
    let full = format!("/proc/sys/{path}");
    let cur = std::fs::read_to_string(&full).map_err(|e| io_err(&full, e))?;
    if cur.trim() != value {
        std::fs::write(&full, value).map_err(|e| io_err(&full, e))?;
    }
    Ok(())
}

/// Writes a file only when its content changes (atomically, by rename); true if written.
pub fn write_if_changed(path: &std::path::Path, content: &str) -> Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    // A dot name: dnsmasq's directory watch ignores it until the rename.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).map_err(|e| io_err(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path.display(), e))?;
    Ok(true)
}

/// Runs `tool -batch -` (`ip`, `bridge`) over the given lines, in one process; nothing to
/// run for none.
pub fn run_batch(tool: &str, cmds: &[String]) -> Result<()> {
    if cmds.is_empty() {
        return Ok(());
    }
    let mut input = cmds.join("\n");
    input.push('\n');
    run(tool, &["-batch", "-"], Some(&input)).map(|_| ())
}
