//! How domain values become SQL values and back: UUIDs as 36-char lowercase text, MACs as
//! `aa:bb:cc:dd:ee:ff`, versions as `2.0`, 64-bit vectors as the same bits in a BIGINT.
//!
//! Decoding checks everything: a value edited by hand becomes [`Error::Corrupt`] naming
//! the table and column, never a panic.

use hvha_identity::{HelloId, Uuid};
use hvha_identity::{MacAddr, Version};
use postgres::types::{FromSql, Type};

use crate::db::{Param, RowRef, Value};
use crate::error::{Error, Result};
use crate::model::HostId;

/// A UUID bound as text without allocating.
pub(crate) struct UuidText([u8; Uuid::TEXT_LEN]);

impl UuidText {
    pub(crate) fn new(uuid: &Uuid) -> UuidText {
        UuidText(uuid.to_text())
    }

    /// The 36 characters (always ASCII: lowercase hex and dashes).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Param for UuidText {
    fn value(&self) -> Value<'_> {
        Value::Text(std::borrow::Cow::Borrowed(self.as_str()))
    }
}

/// An optional UUID bound as text or NULL.
pub(crate) fn opt_uuid(uuid: Option<&Uuid>) -> Option<UuidText> {
    uuid.map(UuidText::new)
}

impl Param for HostId {
    fn value(&self) -> Value<'_> {
        Value::Int(self.0)
    }
}

/// A version as `major.minor`.
pub(crate) fn version_text(v: Version) -> String {
    v.to_string()
}

/// The BIGINT holding the 64 bits of `v` (values with the top bit set read negative in
/// `sqlite3`; PostgreSQL has no unsigned 64-bit type either).
pub(crate) fn bits_to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// Inverse of [`bits_to_sql`].
pub(crate) fn bits_from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// An integer column as PostgreSQL returned it: BIGINT, INTEGER, SMALLINT or BOOLEAN
/// (a literal `1` is INTEGER, `COUNT(*)` BIGINT, a comparison BOOLEAN).
struct LenientInt(i64);

impl<'a> FromSql<'a> for LenientInt {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(LenientInt(match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?,
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            _ => i64::from(bool::from_sql(ty, raw)?),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
    }
}

/// Reads the columns of one row, naming the table in errors.
pub(crate) struct Columns<'r, 's> {
    row: RowRef<'r, 's>,
    table: &'static str,
    op: &'static str,
}

impl<'r, 's> Columns<'r, 's> {
    pub(crate) fn new(row: RowRef<'r, 's>, table: &'static str, op: &'static str) -> Self {
        Columns { row, table, op }
    }

    fn corrupt(&self, column: &'static str, value: String, expected: &'static str) -> Error {
        Error::Corrupt {
            table: self.table,
            column,
            value,
            expected,
        }
    }

    fn sql_err(&self, source: crate::db::DbError) -> Error {
        Error::Sql {
            op: self.op,
            source,
        }
    }

    /// Text, or NULL.
    pub(crate) fn opt_text(&self, idx: usize) -> Result<Option<String>> {
        match &self.row {
            RowRef::Sqlite(row) => row.get(idx).map_err(|e| self.sql_err(e.into())),
            RowRef::Pg(row) => row.try_get(idx).map_err(|e| self.sql_err(e.into())),
        }
    }

    /// Text, never NULL.
    pub(crate) fn text(&self, idx: usize) -> Result<String> {
        match &self.row {
            RowRef::Sqlite(row) => row.get(idx).map_err(|e| self.sql_err(e.into())),
            RowRef::Pg(row) => row.try_get(idx).map_err(|e| self.sql_err(e.into())),
        }
    }

    /// An integer, never NULL.
    pub(crate) fn int(&self, idx: usize) -> Result<i64> {
        match &self.row {
            RowRef::Sqlite(row) => row.get(idx).map_err(|e| self.sql_err(e.into())),
            RowRef::Pg(row) => row
                .try_get::<_, LenientInt>(idx)
                .map(|v| v.0)
                .map_err(|e| self.sql_err(e.into())),
        }
    }

    /// An integer, or NULL.
    pub(crate) fn opt_int(&self, idx: usize) -> Result<Option<i64>> {
        match &self.row {
            RowRef::Sqlite(row) => row.get(idx).map_err(|e| self.sql_err(e.into())),
            RowRef::Pg(row) => row
                .try_get::<_, Option<LenientInt>>(idx)
                .map(|v| v.map(|v| v.0))
                .map_err(|e| self.sql_err(e.into())),
        }
    }

    pub(crate) fn bool(&self, idx: usize, column: &'static str) -> Result<bool> {
        match self.int(idx)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.corrupt(column, v.to_string(), "boolean (0 or 1)")),
        }
    }

    pub(crate) fn u32(&self, idx: usize, column: &'static str) -> Result<u32> {
        let v = self.int(idx)?;
        u32::try_from(v).map_err(|_| self.corrupt(column, v.to_string(), "32-bit unsigned"))
    }

    pub(crate) fn uuid(&self, idx: usize, column: &'static str) -> Result<Uuid> {
        let text = self.text(idx)?;
        Uuid::parse(text.as_bytes()).map_err(|_| self.corrupt(column, text, "UUID"))
    }

    pub(crate) fn opt_uuid(&self, idx: usize, column: &'static str) -> Result<Option<Uuid>> {
        match self.opt_text(idx)? {
            None => Ok(None),
            Some(text) => Uuid::parse(text.as_bytes())
                .map(Some)
                .map_err(|_| self.corrupt(column, text, "UUID")),
        }
    }

    pub(crate) fn mac(&self, idx: usize, column: &'static str) -> Result<MacAddr> {
        let text = self.text(idx)?;
        MacAddr::parse(&text).ok_or_else(|| self.corrupt(column, text, "MAC address"))
    }

    pub(crate) fn opt_mac(&self, idx: usize, column: &'static str) -> Result<Option<MacAddr>> {
        match self.opt_text(idx)? {
            None => Ok(None),
            Some(text) => MacAddr::parse(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(column, text, "MAC address")),
        }
    }

    pub(crate) fn version(&self, idx: usize, column: &'static str) -> Result<Version> {
        let text = self.text(idx)?;
        parse_version(&text).ok_or_else(|| self.corrupt(column, text, "version (major.minor)"))
    }

    pub(crate) fn opt_version(&self, idx: usize, column: &'static str) -> Result<Option<Version>> {
        match self.opt_text(idx)? {
            None => Ok(None),
            Some(text) => parse_version(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(column, text, "version (major.minor)")),
        }
    }

    pub(crate) fn hello(&self, idx: usize, column: &'static str) -> Result<HelloId> {
        let text = self.text(idx)?;
        HelloId::parse(text.as_bytes()).map_err(|_| self.corrupt(column, text, "Hello identifier"))
    }

    /// A text enumeration, through its `from_text`.
    pub(crate) fn enumeration<T>(
        &self,
        idx: usize,
        column: &'static str,
        expected: &'static str,
        from_text: fn(&str) -> Option<T>,
    ) -> Result<T> {
        let text = self.text(idx)?;
        from_text(&text).ok_or_else(|| self.corrupt(column, text, expected))
    }

    /// A text enumeration or NULL.
    pub(crate) fn opt_enumeration<T>(
        &self,
        idx: usize,
        column: &'static str,
        expected: &'static str,
        from_text: fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.opt_text(idx)? {
            None => Ok(None),
            Some(text) => from_text(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(column, text, expected)),
        }
    }
}

/// Parse `major.minor`, each 0..=255 in decimal.
pub(crate) fn parse_version(text: &str) -> Option<Version> {
    let (major, minor) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some(Version {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_version_text() {
        let v = Version { major: 2, minor: 0 };
        assert_eq!(version_text(v), "2.0");
        assert_eq!(parse_version("2.0"), Some(v));
        assert_eq!(
            parse_version("255.17"),
            Some(Version {
                major: 255,
                minor: 17
            })
        );
        for bad in [
            "", "2", "2.", ".0", "256.0", "2.0.1", "+2.0", "2.-1", " 2.0",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn test_bits_round_trip() {
        for v in [0, 1, 0x28, u64::from(u32::MAX), 1 << 63, u64::MAX] {
            assert_eq!(bits_from_sql(bits_to_sql(v)), v);
        }
        assert_eq!(bits_to_sql(u64::MAX), -1);
        assert_eq!(bits_to_sql(0x28), 0x28);
    }
}
