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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::hs::{
        DiscoveryType, HostKey, NeedsAttEntry, NeedsAttention, Request, RequestKind, VmStat,
    };

    fn vm() -> VmStat {
        VmStat {
            uuid: Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").unwrap(),
            state: VmState::Started,
            state_chg: true,
            missed_hb: Some(42),
            short_msg: Some(0x28),
            missed_hm_entry: None,
            discovery: Some(DiscoveryType::Moved),
        }
    }

    #[test]
    fn test_field_names() {
        let na = NeedsAttention {
            tag: Some(-8_403_607_219_422_560_833),
            entries: vec![NeedsAttEntry::Vms {
                host: HostKey {
                    machine_type: "8408".into(),
                    model: "E8E".into(),
                    serial: "21282FW".into(),
                },
                vms: vec![vm()],
            }],
        };
        let text = serde_json::to_string(&na).unwrap();
        assert_eq!(
            text,
            "{\"hsTag\":\"-8403607219422560833\",\"entries\":[{\"kind\":\"vms\",\
             \"host\":{\"machineType\":\"8408\",\"model\":\"E8E\",\"serial\":\"21282FW\"},\
             \"vms\":[{\"uuid\":\"61be20f0-09a8-4753-b5e5-564f8a545ed5\",\"state\":\"STARTED\",\
             \"stateChg\":true,\"missedHb\":42,\"shortMsg\":40,\"missedHMEntry\":null,\
             \"discoveryInfo\":\"MOVED\"}]}]}"
        );
        assert_eq!(from_json::<NeedsAttention>(&text).unwrap(), na);
        let ack = Request::seed(RequestKind::Acknowledge { tag: -1 });
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            "{\"author\":\"LIBKREST\",\"title\":\"acknowledgment to VIOS\",\
             \"request\":{\"action\":\"ACKNOWLEDGE\",\"hsTag\":\"-1\"}}"
        );
    }

    #[test]
    fn test_absent_optionals_and_refusals() {
        // Optional attributes may be left out; an absent tag is no tag.
        let na: NeedsAttention = from_json("{\"entries\":[]}").unwrap();
        assert_eq!(na, NeedsAttention::default());
        let v: VmStat = from_json(
            "{\"uuid\":\"61BE20F0-09A8-4753-B5E5-564F8A545ED5\",\"state\":\"STARTED\",\
             \"stateChg\":false}",
        )
        .unwrap();
        assert_eq!(v.missed_hm_entry, None);
        assert_eq!(v.discovery, None);
        for (bad, names) in [
            ("{\"hsTag\":\"12x\",\"entries\":[]}", "bad hsTag '12x'"),
            ("{\"hsTag\":12,\"entries\":[]}", "invalid type"),
            ("{\"entries\":[],\"extra\":1}", "unknown field `extra`"),
            (
                "{\"entries\":[{\"kind\":\"vms\",\"host\":{\"machineType\":\"a\",\"model\":\"b\",\
                 \"serial\":\"c\"},\"vms\":[{\"uuid\":\"61be20f0\",\"state\":\"STARTED\",\
                 \"stateChg\":false}]}]}",
                "bad UUID '61be20f0'",
            ),
            (
                "{\"entries\":[{\"kind\":\"vms\",\"host\":{\"machineType\":\"a\",\"model\":\"b\",\
                 \"serial\":\"c\"},\"vms\":[{\"uuid\":\"61be20f0-09a8-4753-b5e5-564f8a545ed5\",\
                 \"state\":\"RUNNING\",\"stateChg\":false}]}]}",
                "bad VM state 'RUNNING'",
            ),
        ] {
            let err = from_json::<NeedsAttention>(bad).unwrap_err().to_string();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }
}
