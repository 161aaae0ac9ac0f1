//! Images (`/v2/images`, the image service): create from a file, list, delete.

use serde::Deserialize;
use serde_json::{json, Value};

use super::output::{cell, done, or_dash, print_items, print_object, Column};
use super::wire::{read, Item};
use crate::session::{err, Res, Session};

#[derive(Deserialize)]
pub struct Image {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    disk_format: Option<String>,
    #[serde(default)]
    size: Value,
}

#[derive(Deserialize)]
struct ImageList {
    #[serde(default)]
    images: Vec<Item<Image>>,
}

const COLUMNS: &[Column<Image>] = &[
    ("ID", |i| or_dash(&i.id)),
    ("Name", |i| or_dash(&i.name)),
    ("Status", |i| or_dash(&i.status).to_uppercase()),
    ("Disk Format", |i| or_dash(&i.disk_format)),
    ("Size", |i| cell(&i.size)),
];

/// `KEY=VALUE` properties (`kernel_id=...`) as the create body's extra keys.
fn properties(props: &[String]) -> Res<serde_json::Map<String, Value>> {
    props
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), json!(v)))
                .ok_or_else(|| {
                    err(format!(
                        "ERROR (CommandError): --property {p}: give KEY=VALUE"
                    ))
                })
        })
        .collect()
}

/// Creates an image record, uploads `file` into it, and prints the active image.
pub fn create(
    s: &Session,
    name: &str,
    file: &str,
    disk_format: &str,
    container_format: &str,
    props: &[String],
    as_json: bool,
) -> Res<()> {
    let f = std::fs::File::open(file)
        .map_err(|e| err(format!("ERROR (CommandError): Can't open '{file}': {e}")))?;
    let mut body = properties(props)?;
    body.insert("name".into(), json!(name));
    body.insert("disk_format".into(), json!(disk_format));
    body.insert("container_format".into(), json!(container_format));
    let v: Item<Image> = read(
        s.call("POST", "/v2/images", Some(Value::Object(body)))?,
        "POST /v2/images",
    )?;
    let id =
        v.id.clone()
            .ok_or_else(|| err("ERROR (CommandError): the image service gave no id"))?;
    let path = format!("/v2/images/{id}/file");
    if let Err(e) = s.put_file(&path, f) {
        // No half-made image left behind: the record without data is of no use.
        let _ = s.call("DELETE", &format!("/v2/images/{id}"), None);
        return Err(e);
    }
    let shown = s.get(&format!("/v2/images/{id}"))?;
    print_object(&shown, as_json);
    Ok(())
}

pub fn list(s: &Session, as_json: bool) -> Res<()> {
    let v: ImageList = read(s.get("/v2/images")?, "GET /v2/images")?;
    print_items(&v.images, COLUMNS, as_json);
    Ok(())
}

/// Deletes an image given by id or (unique) name.
pub fn delete(s: &Session, image: &str) -> Res<()> {
    let v: ImageList = read(s.get("/v2/images")?, "GET /v2/images")?;
    let matches: Vec<&Item<Image>> = v
        .images
        .iter()
        .filter(|i| i.id.as_deref() == Some(image) || i.name.as_deref() == Some(image))
        .collect();
    let id = match matches.as_slice() {
        [one] => one.id.clone().unwrap_or_default(),
        [] => return Err(err(format!("ERROR (CommandError): No Image matching {image}."))),
        _ => {
            return Err(err(format!(
                "ERROR (CommandError): Multiple image matches found for '{image}', use an ID to be more specific."
            )))
        }
    };
    s.call("DELETE", &format!("/v2/images/{id}"), None)?;
    done(format_args!("Deleted image {image} ({id})"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_key_value_pairs() {
        let p = properties(&["kernel_id=abc".into(), "os_command_line=a=b c".into()]).unwrap();
        assert_eq!(p["kernel_id"], "abc");
        assert_eq!(p["os_command_line"], "a=b c");
        assert!(properties(&["nokey".into()]).is_err());
    }
}
