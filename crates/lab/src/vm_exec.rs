//! `lab exec VM -- CMD` into a real VM: through the VM's command channel, a second serial
//! port the agent's drivers put on a unix socket in the VM's directory (see
//! `VmSpec::command_socket`). Only root on the VM's own host can open that file: no port is
//! open to anyone on any network. The test image's /init reads `ID COMMAND` lines there,
//! runs each with sh and answers with its output and `DONE_MARK ID CODE`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::test_image::DONE_MARK;

/// One shell word per argument, single-quoted where needed. A newline would end the
/// command line early, so it is refused.
pub fn command_line(args: &[String]) -> Result<String, String> {
    let mut words = Vec::new();
    for a in args {
        if a.contains('\n') || a.contains('\r') {
            return Err(format!("{a:?}: a command for a VM is one line"));
        }
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
        words.push(if plain {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        });
    }
    if words.is_empty() {
        return Err("give a command to run in the VM".into());
    }
    Ok(words.join(" "))
}

/// The command's output and exit code, once `text` holds the line that ends command `id`.
/// Output of an earlier command that was not waited for (another `id`) is left out.
pub fn finished(text: &str, id: &str) -> Option<(String, i32)> {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let Some(rest) = line.trim_end().strip_prefix(DONE_MARK) else {
            out.push_str(line);
            continue;
        };
        let mut f = rest.split_whitespace();
        if f.next() == Some(id) {
            let code = f.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            return line.ends_with('\n').then_some((out, code));
        }
        out.clear(); // all of it came before another command's end
    }
    None
}

/// Runs `args` in the VM whose command socket is `socket`; returns its output and code.
pub fn run(socket: &Path, args: &[String], timeout: Duration) -> Result<(String, i32), String> {
    let line = command_line(args)?;
    let id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let at = |e: std::io::Error| format!("{}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        // qemu killed, or powered off: its socket file outlives it.
        std::io::ErrorKind::ConnectionRefused => format!(
            "{}: the VM is not running (connection refused)",
            socket.display()
        ),
        _ => at(e),
    })?;
    s.write_all(format!("{id} {line}\n").as_bytes())
        .map_err(at)?;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "the VM did not finish `{line}` in {timeout:?} (its output so far: {:?})",
                    String::from_utf8_lossy(&got)
                )
            })?;
        s.set_read_timeout(Some(left)).map_err(at)?;
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("{}: the VM closed its channel", socket.display())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(at(e)),
        }
        if let Some(done) = finished(&String::from_utf8_lossy(&got), &id) {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_become_one_quoted_line() {
        assert_eq!(
            command_line(&v(&["ip", "-4", "addr"])).unwrap(),
            "ip -4 addr"
        );
        assert_eq!(
            command_line(&v(&["echo", "a b", "it's", ""])).unwrap(),
            "echo 'a b' 'it'\\''s' ''"
        );
        assert!(command_line(&v(&["echo", "a\nreboot"]))
            .unwrap_err()
            .contains("one line"));
        assert!(command_line(&[]).is_err());
    }

    #[test]
    fn the_output_ends_at_its_own_mark() {
        let t = "old\nnovanet-exec-done 1-1 0\ninet 10.0.0.2/24\nnovanet-exec-done 7-9 3\n";
        assert_eq!(finished(t, "7-9"), Some(("inet 10.0.0.2/24\n".into(), 3)));
        assert_eq!(finished("partial\nnovanet-exec-done 7-9 0", "7-9"), None);
        assert_eq!(finished("inet\n", "7-9"), None);
    }
}
