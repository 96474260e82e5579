//! Tests against real SQLite files in a temporary directory.

use crate::{Hsdb, Options, SCHEMA_VERSION};

#[test]
fn open_migrates_empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).expect("open");
    assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
    db.integrity_check().expect("integrity");
}
