//! What virsh prints, through the libvirt driver's parsers
//! (`controlplane::platform::libvirt::parse`): `list --all`, `list --all --uuid --name`,
//! `list --all --uuid`, `dominfo`, `nodeinfo`, `domstate` — any bytes, read as the
//! driver reads them (lossy UTF-8, one string per line).
//!
//! Never a panic. A name parsed is at most 515 bytes (512 and an ellipsis) and holds no
//! control character; every state is one of libvirt's words; sizes are non-zero.

#![no_main]

use controlplane::platform::libvirt::parse;
use libfuzzer_sys::fuzz_target;

/// The longest name `bounded` keeps: 512 bytes and `…`.
const MAX_NAME: usize = 512 + 3;

fn check_name(name: &str) {
    assert!(name.len() <= MAX_NAME, "a name of {} bytes", name.len());
    assert!(
        !name.chars().any(char::is_control),
        "control character in {name:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if let Ok(states) = parse::state_list(&lines) {
        assert!(states.len() <= lines.len());
        for (name, _) in &states {
            check_name(name);
        }
    }
    if let Ok(pairs) = parse::uuid_name_list(&lines) {
        assert!(pairs.len() <= lines.len());
        for (_, name) in &pairs {
            assert!(!name.is_empty());
            check_name(name);
        }
    }
    if let Ok(uuids) = parse::uuid_list(&lines) {
        assert_eq!(uuids.len(), lines.len());
    }
    if let Ok((spec, _)) = parse::dominfo(&lines) {
        check_name(&spec.name);
        assert!(spec.cpu_milli >= 1_000 && spec.cpu_milli % 1_000 == 0);
    }
    if let Ok((cpu_milli, _)) = parse::nodeinfo(&lines) {
        assert!(cpu_milli >= 1_000);
    }
    let _ = parse::vm_status(&text);
});
