//! Reading the API's answers into typed values.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::session::{err, Res};

/// An object of an answer read two ways: the fields this client uses, typed, and the object
/// as the server sent it, which property tables and `--json` print whole (as novaclient does,
/// whatever fields a server adds).
#[derive(Debug, Clone)]
pub struct Item<T> {
    pub fields: T,
    pub raw: Value,
}

impl<T> std::ops::Deref for Item<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.fields
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let fields = T::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Item { fields, raw })
    }
}

/// An answer's body as `T`. Another shape is the server's doing: say so, and which call.
pub fn read<T: DeserializeOwned>(body: Value, call: &str) -> Res<T> {
    serde_json::from_value(body).map_err(|e| {
        err(format!(
            "ERROR (CommandError): the answer to {call} is not what this client expects: {e}\n\
             The server may be of another version than this client."
        ))
    })
}

/// An ID as the compute API gives it: nova-network's integers (security groups, their
/// rules, floating IPs) or strings.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Id {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::Text(t) => f.write_str(t),
        }
    }
}

/// For `Option<Option<T>>` fields: `Some(None)` when the key is there with null, `None`
/// (with `#[serde(default)]`) when it is missing. novaclient shows some columns only when
/// the server sends their key.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    struct Named {
        name: String,
        #[serde(default, deserialize_with = "present")]
        reason: Option<Option<String>>,
    }

    #[test]
    fn items_keep_what_the_server_sent() {
        let v = json!({"name": "web", "extra": [1, 2]});
        let i: Item<Named> = read(v.clone(), "GET /x").unwrap();
        assert_eq!(i.name, "web");
        assert_eq!(i.raw, v);
        assert_eq!(i.reason, None);
        let i: Item<Named> = read(json!({"name": "a", "reason": null}), "GET /x").unwrap();
        assert_eq!(i.reason, Some(None));
    }

    #[test]
    fn ids_of_either_kind_and_a_wrong_shape_named() {
        let ids: Vec<Id> = read(json!([7, "abc"]), "GET /x").unwrap();
        assert_eq!(
            ids.iter().map(Id::to_string).collect::<Vec<_>>(),
            ["7", "abc"]
        );
        let e = read::<Item<Named>>(json!({"name": 3}), "GET /os-things").unwrap_err();
        assert!(e.0.contains("GET /os-things"), "{e}");
    }
}
