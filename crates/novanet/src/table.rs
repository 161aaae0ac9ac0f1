//! Tables as the nova client prints them (prettytable: headers centred the way Python's
//! `str.center` does, cells left-aligned, one space of padding).

use std::io::Write;

/// Prints `text` and a newline on standard output. A closed pipe (`novanet manage fixed list
/// | head`) ends the process quietly with status 0, as the reader asked for no more; any
/// other write failure ends it with status 1 and says why. Every command's output goes
/// through here: `println!` would panic on a closed pipe.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let r = o
        .write_all(text.as_bytes())
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    if let Err(e) = r {
        stdout_failed(&e);
    }
}

/// Prints raw bytes on standard output, as `out` does.
pub fn out_bytes(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(bytes).and_then(|()| o.flush()) {
        stdout_failed(&e);
    }
}

fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1)
}

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
            s
        });
        let mut out = format!("{rule}\n|");
        for (h, w) in self.headers.iter().zip(&widths) {
            out.push_str(&format!(" {} |", py_center(h, *w)));
        }
        out.push_str(&format!("\n{rule}\n"));
        for r in &self.rows {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                out.push_str(&format!(" {c}{} |", " ".repeat(w - c.chars().count())));
            }
            out.push('\n');
        }
        out.push_str(&rule);
        out
    }
}

/// Python's `str.center`: when the padding is odd, the extra space goes left for odd widths.
fn py_center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len >= width {
        return s.to_string();
    }
    let pad = width - len;
    let left = pad / 2 + (pad & width & 1);
    format!("{}{s}{}", " ".repeat(left), " ".repeat(pad - left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_seed_secgroup_table() {
        let mut t = Table::new(&[
            "IP Protocol",
            "From Port",
            "To Port",
            "IP Range",
            "Source Group",
        ]);
        t.row(vec![
            "icmp".into(),
            "-1".into(),
            "-1".into(),
            "0.0.0.0/0".into(),
            "".into(),
        ]);
        t.row(vec![
            "tcp".into(),
            "22".into(),
            "22".into(),
            "0.0.0.0/0".into(),
            "".into(),
        ]);
        let want = "\
+-------------+-----------+---------+-----------+--------------+
| IP Protocol | From Port | To Port |  IP Range | Source Group |
+-------------+-----------+---------+-----------+--------------+
| icmp        | -1        | -1      | 0.0.0.0/0 |              |
| tcp         | 22        | 22      | 0.0.0.0/0 |              |
+-------------+-----------+---------+-----------+--------------+";
        assert_eq!(t.render(), want);
    }

    #[test]
    fn matches_the_seed_server_list() {
        let mut t = Table::new(&["ID", "Name", "Status", "Networks"]);
        t.row(vec![
            "5357143d-66f5-446c-a82f-86648ebb3842".into(),
            "cirros".into(),
            "BUILD".into(),
            "novanetwork=10.0.0.2".into(),
        ]);
        let want = "\
+--------------------------------------+--------+--------+----------------------+
|                  ID                  |  Name  | Status |       Networks       |
+--------------------------------------+--------+--------+----------------------+
| 5357143d-66f5-446c-a82f-86648ebb3842 | cirros | BUILD  | novanetwork=10.0.0.2 |
+--------------------------------------+--------+--------+----------------------+";
        assert_eq!(t.render(), want);
    }
}
