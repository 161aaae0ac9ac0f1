//! Key pairs (`/os-keypairs`): add from a public key, list, delete.

use serde::Deserialize;
use serde_json::json;

use super::output::{done, or_dash, print_items, Column};
use super::wire::{read, Item};
use crate::session::{err, Res, Session};

#[derive(Deserialize)]
pub struct Keypair {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct KeypairBody {
    keypair: Item<Keypair>,
}

#[derive(Deserialize)]
struct KeypairList {
    #[serde(default)]
    keypairs: Vec<KeypairBody>,
}

const COLUMNS: &[Column<Keypair>] = &[
    ("Name", |k| or_dash(&k.name)),
    ("Fingerprint", |k| or_dash(&k.fingerprint)),
];

/// Adds the public key in `pub_key` (a file, or `-` for standard input) as `name`.
pub fn add(s: &Session, name: &str, pub_key: Option<String>) -> Res<()> {
    let path = pub_key.ok_or_else(|| {
        err(
            "ERROR (CommandError): give --pub-key FILE (key generation is not offered)\n\
             Make a key with `ssh-keygen -f KEYFILE` and give --pub-key KEYFILE.pub.",
        )
    })?;
    let key = if path == "-" {
        let mut k = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut k)
            .map(|_| k)
            .map_err(|e| {
                err(format!(
                    "ERROR (CommandError): Can't read standard input: {e}"
                ))
            })?
    } else {
        std::fs::read_to_string(&path).map_err(|e| {
            err(format!(
                "ERROR (CommandError): Can't open or read '{path}': {e}"
            ))
        })?
    };
    let v: KeypairBody = read(
        s.call(
            "POST",
            "/os-keypairs",
            Some(json!({"keypair": {"name": name, "public_key": key}})),
        )?,
        "POST /os-keypairs",
    )?;
    done(format_args!(
        "Added key pair {name} ({})",
        or_dash(&v.keypair.fingerprint)
    ));
    Ok(())
}

pub fn list(s: &Session, as_json: bool) -> Res<()> {
    let v: KeypairList = read(s.get("/os-keypairs")?, "GET /os-keypairs")?;
    let keys: Vec<Item<Keypair>> = v.keypairs.into_iter().map(|k| k.keypair).collect();
    print_items(&keys, COLUMNS, as_json);
    Ok(())
}

pub fn delete(s: &Session, name: &str) -> Res<()> {
    s.call("DELETE", &format!("/os-keypairs/{name}"), None)?;
    done(format_args!("Deleted key pair {name}"));
    Ok(())
}
