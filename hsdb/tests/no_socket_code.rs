//! `hsdb` takes its key types from `hvha-identity`, never from `dataplane`: a control
//! plane built on `hsdb` must compile and link no socket code (docs/architecture.md).

/// The `[dependencies]` table of hsdb's manifest names no crate of the dataplane side.
#[test]
fn hsdb_does_not_depend_on_the_dataplane() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = "";
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[dependencies]"
            && let Some((name, _)) = line.split_once(['=', '.'])
            && !line.starts_with('#')
        {
            deps.push(name.trim());
        }
    }
    assert!(deps.contains(&"hvha-identity"), "{deps:?}");
    for forbidden in ["dataplane", "libc", "socket2", "mio", "pnet_packet"] {
        assert!(
            !deps.contains(&forbidden),
            "hsdb depends on {forbidden}: {deps:?}"
        );
    }
}
