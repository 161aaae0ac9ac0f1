//! How client commands print: novaclient's tables on standard output, or the API's JSON with
//! `--json`; what a command did, when novaclient prints nothing, on standard error.

use serde_json::Value;

use super::wire::Item;
use crate::table::{out, Table};

/// Says what a command did when novaclient would print nothing (on standard error, so
/// standard output stays as novaclient's).
pub fn done(msg: impl std::fmt::Display) {
    eprintln!("{msg}");
}

/// A JSON value in a table cell: null is `-`, a string itself, anything else its JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional text in a table cell: `-` when absent, as novaclient shows None.
pub fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// A table column: its header, and what a row shows in it.
pub type Column<T> = (&'static str, fn(&T) -> String);

pub fn print_table<'a, T: 'a>(rows: impl IntoIterator<Item = &'a T>, cols: &[Column<T>]) {
    let mut t = Table::new(&cols.iter().map(|c| c.0).collect::<Vec<_>>());
    for r in rows {
        t.row(cols.iter().map(|(_, show)| show(r)).collect());
    }
    out(&t.render());
}

pub fn print_json_list(items: Vec<Value>) {
    out(&serde_json::to_string_pretty(&Value::Array(items)).expect("json"));
}

/// Items as a table of `cols`, or (`--json`) as the server sent them.
pub fn print_items<T>(items: &[Item<T>], cols: &[Column<T>], as_json: bool) {
    if as_json {
        print_json_list(items.iter().map(|i| i.raw.clone()).collect());
        return;
    }
    print_table(items.iter().map(|i| &i.fields), cols);
}

/// An object as novaclient's Property/Value table (nested values as JSON), or its JSON.
pub fn print_object(v: &Value, as_json: bool) {
    if as_json {
        out(&serde_json::to_string_pretty(v).expect("json"));
        return;
    }
    let mut t = Table::new(&["Property", "Value"]);
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let s = match val {
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => cell(other),
            };
            t.row(vec![k.clone(), s]);
        }
    }
    out(&t.render());
}
