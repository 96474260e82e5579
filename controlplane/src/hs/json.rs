//! The JSON form of the model (serde): the same vocabulary as the XML, field names in
//! camelCase as the seed's attributes (`hmResponseSec`, `missedHb`, `shortMsg`,
//! `missedHMEntry`, `hsTag`), each listed on its type in [`crate::hs`].
//!
//! Choices: UUIDs as their lower-case text; VM states and enumerations as the seed's words
//! (`STARTED`, `UP`, `MOVED`); booleans as `true` / `false`; `reason` and `shortMsg` as
//! numbers (the hex is an XML spelling); absent optional attributes as `null`; `hsTag` as a
//! **string** of the signed decimal, because a JSON reader with 53-bit numbers (JavaScript,
//! older `jq`) would round a 64-bit tag into one that acknowledges nothing.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::Serializer;

use hsdb::{Uuid, VmState};

/// A value as pretty JSON.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(value)
}

/// A value from JSON.
pub fn from_json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

fn uuid_from(text: &str) -> Result<Uuid, String> {
    Uuid::parse(text.as_bytes()).map_err(|e| format!("bad UUID '{text}': {e}"))
}

/// `Uuid` as its text.
pub mod uuid_text {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(uuid: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(uuid)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        uuid_from(&text).map_err(D::Error::custom)
    }
}

/// `Option<Uuid>` as its text or `null`.
pub mod opt_uuid_text {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(uuid: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match uuid {
            Some(u) => s.collect_str(u),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| uuid_from(&t).map_err(D::Error::custom))
            .transpose()
    }
}

/// `VmState` as the seed's word.
pub mod vm_state_text {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(state: &VmState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.as_str())
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VmState, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        VmState::from_text(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "bad VM state '{text}': ADDED, STARTING, STARTED, STOPPING, STOPPED, REMOVING, SUSPENDED or UNKNOWN"
            ))
        })
    }
}

fn tag_from(text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("bad hsTag '{text}': a signed 64-bit decimal integer"))
}

/// An `hsTag` as a string.
pub mod tag_text {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(tag: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(tag)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        tag_from(&text).map_err(D::Error::custom)
    }
}

/// An optional `hsTag` as a string or `null`.
pub mod opt_tag_text {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(tag: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match tag {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| tag_from(&t).map_err(D::Error::custom))
            .transpose()
    }
}
