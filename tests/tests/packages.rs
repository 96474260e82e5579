//! The Debian packages (scripts/build-debs, docs/install.md).
//!
//! - `shipped_configuration_files`: the default configuration files of dist/config as the
//!   packages install them: `hactl check-config` accepts hactl.toml as shipped; hmd.toml
//!   and vmmd.toml are refused until the site's identity is set, naming the key (the
//!   decision is in docs/install.md); and every commented example, uncommented, is
//!   valid, so the examples cannot drift from the parsers.
//! - `packages_install_check_remove_and_purge_in_a_clean_root`: in a clean Debian root
//!   (`mmdebstrap --variant=minbase bookworm`) the six packages install with dpkg;
//!   their files are where they belong (binaries without debug information but with a
//!   debug link, the debug files under /usr/lib/debug/.build-id/ named by the binaries'
//!   build-ids, units, conffiles, a man page for every hactl subcommand, completions);
//!   each binary answers `--help` and `--version`, and checks the shipped configuration
//!   (hmd and vmmd with the site's keys added, as docs/install.md tells); `dpkg -r`
//!   leaves only the conffiles, `dpkg -P` leaves the root exactly as it was.
//!
//! The packages come from `HVHA_DEBS_DIR` (.ci/run builds them before the tests), else
//! the test builds them with scripts/build-debs into a scratch directory (a nested
//! release build; cargo's lock on the release directory is not held by `cargo test`).
//! The root is `HVHA_DEBS_ROOT`, an mmdebstrap tarball .ci/run makes while it builds the
//! packages (the download overlaps the compilation), else made here by mmdebstrap.
//! Needs root (chroot, dpkg in the root), mmdebstrap and a Debian mirror, unshare and
//! ip: without them it prints SKIPPED and passes, except under CI=true where it fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use hvha_e2e::binary;

/// The workspace's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Print SKIPPED and return, or fail under CI.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "packages: {why} (CI must run this test)"
    );
    eprintln!("SKIPPED packages: {why}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and return the output; panics when it cannot be started.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run, and panic with its output unless it exits 0.
fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A copy of `text` with every commented example (`#key = …`, `#[table]`,
/// `#"quoted key" = …`) uncommented.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest.starts_with('"')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ')) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An Ethernet interface of this machine other than loopback, if any.
fn ethernet_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            std::fs::read_to_string(format!("/sys/class/net/{n}/type"))
                .is_ok_and(|t| t.trim() == "1")
                && n != "lo"
        })
        .collect();
    names.sort();
    names.into_iter().next()
}

#[test]
fn shipped_configuration_files() {
    for bin in ["hmd", "vmmd", "hactl"] {
        if !binary(bin).exists() {
            return skip(&format!(
                "{} not built (cargo test --workspace builds it)",
                binary(bin).display()
            ));
        }
    }
    let config = repo().join("dist/config");
    let scratch = std::env::temp_dir().join(format!("hvha-pkgconf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");

    // hactl.toml as shipped: valid (SQLite HSDB, the sim platform).
    let out = ok(Command::new(binary("hactl"))
        .arg("--config")
        .arg(config.join("hactl.toml"))
        .arg("check-config"));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("hsdb = \"/var/lib/hvha/hsdb.sqlite\""),
        "{stdout}"
    );
    assert!(stdout.contains("driver = \"sim\""), "{stdout}");

    // hmd.toml and vmmd.toml as shipped: refused until the site's identity is set, with
    // exit 2 (a configuration error: systemd does not restart it) naming the key.
    for (bin, key) in [("hmd", "monitor_uuid"), ("vmmd", "vm_uuid")] {
        let out = run(Command::new(binary(bin))
            .arg("--check-config")
            .arg(config.join(format!("{bin}.toml"))));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin}: {stderr}");
        assert!(
            stderr.contains(&format!("missing field `{key}`")),
            "{bin}: {stderr}"
        );
    }

    // Every example uncommented: valid. Paths this machine may lack are moved into the
    // scratch directory; the metrics port is any free one.
    let hactl = uncomment(&std::fs::read_to_string(config.join("hactl.toml")).expect("hactl"))
        .replace("/etc/hvha/", &format!("{}/", scratch.display()));
    assert!(hactl.contains("\ndriver = \"libvirt\""), "{hactl}");
    assert!(hactl.contains("\n[dashboard]\n"), "{hactl}");
    let path = scratch.join("hactl.toml");
    std::fs::write(&path, &hactl).expect("write");
    // The dashboard's users file, as the comment above [dashboard] says to make it.
    std::fs::write(scratch.join("password"), "correct horse battery staple\n").expect("write");
    ok(Command::new(binary("hactl"))
        .arg("--config")
        .arg(&path)
        .args(["dashboard", "user", "add", "admin", "--role", "operator"])
        .arg("--password-file")
        .arg(scratch.join("password")));
    let out = ok(Command::new(binary("hactl"))
        .arg("--config")
        .arg(&path)
        .arg("check-config"));
    assert!(
        text(&out.stdout).contains("\"host-a\" = \"qemu+ssh://root@host-a/system\""),
        "{}",
        text(&out.stdout)
    );

    let vmmd = uncomment(&std::fs::read_to_string(config.join("vmmd.toml")).expect("vmmd"))
        .replace("/var/lib/vmmd/", &format!("{}/", scratch.display()));
    assert!(vmmd.contains("\nvm_uuid = "), "{vmmd}");
    let path = scratch.join("vmmd.toml");
    std::fs::write(&path, &vmmd).expect("write");
    ok(Command::new(binary("vmmd"))
        .arg("--check-config")
        .arg(&path));

    match ethernet_interface() {
        None => eprintln!(
            "packages: no Ethernet interface on this machine: hmd's examples checked in the \
             package test only"
        ),
        Some(iface) => {
            let hmd = uncomment(&std::fs::read_to_string(config.join("hmd.toml")).expect("hmd"))
                .replace("[\"eth1\"]", &format!("[\"{iface}\"]"))
                .replace("/var/lib/hvha/", &format!("{}/", scratch.display()))
                .replace("/run/hvha/", &format!("{}/", scratch.display()))
                .replace("127.0.0.1:9464", "127.0.0.1:0");
            assert!(hmd.contains("\nmonitor_uuid = "), "{hmd}");
            let path = scratch.join("hmd.toml");
            std::fs::write(&path, &hmd).expect("write");
            ok(Command::new(binary("hmd")).arg("--check-config").arg(&path));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The six packages: `HVHA_DEBS_DIR`'s, or built now into `scratch`.
fn debs(scratch: &Path) -> Option<Vec<PathBuf>> {
    let dir = match std::env::var_os("HVHA_DEBS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let out_dir = scratch.join("debs");
            let started = Instant::now();
            eprintln!("packages: HVHA_DEBS_DIR not set: scripts/build-debs {out_dir:?}");
            ok(Command::new(repo().join("scripts/build-debs")).arg(&out_dir));
            eprintln!("packages: built in {:.0?}", started.elapsed());
            out_dir
        }
    };
    let mut found = Vec::new();
    for pkg in ["hmd", "vmmd", "hactl"] {
        for suffix in ["", "-dbgsym"] {
            let name = format!("{pkg}{suffix}_");
            let deb = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&name) && n.ends_with(".deb"))
                })
                .unwrap_or_else(|| panic!("no {name}*.deb in {}", dir.display()));
            found.push(deb);
        }
    }
    Some(found)
}

/// Every path under `root` (not following symbolic links), relative to it.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if rel == "proc" || rel == "sys" {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            }
            all.insert(format!("/{rel}"));
        }
    }
    all
}

/// A command run inside `root` with a plain environment.
fn chroot(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// The GNU build-id of an ELF file.
fn build_id(file: &Path) -> String {
    let out = ok(Command::new("readelf")
        .arg("--notes")
        .arg("--wide")
        .arg(file));
    text(&out.stdout)
        .lines()
        .find_map(|l| l.split("Build ID: ").nth(1))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("{} has no build-id", file.display()))
}

/// The section names of an ELF file.
fn sections(file: &Path) -> String {
    text(
        &ok(Command::new("readelf")
            .arg("--sections")
            .arg("--wide")
            .arg(file))
        .stdout,
    )
}

#[test]
fn packages_install_check_remove_and_purge_in_a_clean_root() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid != "0" {
        return skip("not root (chroot and dpkg in a root need it)");
    }
    for tool in [
        "mmdebstrap",
        "dpkg-deb",
        "objcopy",
        "readelf",
        "unshare",
        "ip",
        "gzip",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return skip(&format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    let scratch = Scratch::new();
    let scratch = scratch.0.as_path();
    let Some(debs) = debs(scratch) else { return };
    let version = text(
        &ok(Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&debs[0])
            .arg("Version"))
        .stdout,
    )
    .trim()
    .to_owned();
    for deb in &debs {
        let depends = text(
            &ok(Command::new("dpkg-deb")
                .arg("--field")
                .arg(deb)
                .arg("Depends"))
            .stdout,
        );
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        if name.contains("-dbgsym_") {
            assert!(
                depends.contains(&format!("(= {version})")),
                "{name}: {depends}"
            );
        } else {
            assert!(depends.starts_with("libc6 (>= 2."), "{name}: {depends}");
        }
    }

    // A clean root.
    let root = scratch.join("root");
    let root = root.as_path();
    let started = Instant::now();
    match std::env::var_os("HVHA_DEBS_ROOT") {
        Some(tarball) => {
            // mmdebstrap's tarball, made by .ci/run while the packages were built.
            std::fs::create_dir_all(root).expect("root dir");
            ok(Command::new("tar")
                .arg("--extract")
                .arg("--file")
                .arg(&tarball)
                .arg("--directory")
                .arg(root));
            eprintln!(
                "packages: {} extracted: {:.1?}",
                PathBuf::from(tarball).display(),
                started.elapsed()
            );
        }
        None => {
            let out = run(Command::new("mmdebstrap")
                .args(["--variant=minbase", "--quiet", "bookworm"])
                .arg(root));
            if !out.status.success() {
                return skip(&format!(
                    "mmdebstrap could not make a bookworm root (no Debian mirror?): {}",
                    text(&out.stderr)
                ));
            }
            eprintln!(
                "packages: mmdebstrap --variant=minbase bookworm: {:.1?}",
                started.elapsed()
            );
        }
    }
    let before = tree(root);

    // Install the six.
    let started = Instant::now();
    let inside = root.join("tmp/debs");
    std::fs::create_dir_all(&inside).expect("debs dir");
    let mut names = Vec::new();
    for deb in &debs {
        let name = deb
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        std::fs::copy(deb, inside.join(&name)).expect("copy deb");
        names.push(format!("/tmp/debs/{name}"));
    }
    let mut install = vec!["dpkg", "--install"];
    install.extend(names.iter().map(String::as_str));
    ok(&mut chroot(root, &install));
    std::fs::remove_dir_all(&inside).expect("remove debs");
    eprintln!("packages: dpkg --install: {:.1?}", started.elapsed());

    // The files.
    for (bin, unit) in [
        ("hmd", "hmd.service"),
        ("vmmd", "vmmd.service"),
        ("hactl", "hactl.service"),
    ] {
        let exe = root.join("usr/bin").join(bin);
        let secs = sections(&exe);
        assert!(
            !secs.contains(".debug_info"),
            "{bin} still has debug information"
        );
        assert!(secs.contains(".gnu_debuglink"), "{bin} has no debug link");
        assert!(secs.contains(".symtab"), "{bin} lost its symbol table");
        let id = build_id(&exe);
        let debug = root.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        ));
        assert!(
            sections(&debug).contains(".debug_info"),
            "{}",
            debug.display()
        );
        assert_eq!(build_id(&debug), id);
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "packages: /usr/bin/{bin} {} bytes, its debug file {} bytes",
            size(&exe),
            size(&debug)
        );
        for file in [
            format!("lib/systemd/system/{unit}"),
            format!("etc/hvha/{bin}.toml"),
            format!("usr/share/man/man8/{bin}.8.gz"),
            format!("usr/share/bash-completion/completions/{bin}"),
            format!("usr/share/zsh/vendor-completions/_{bin}"),
            format!("usr/share/fish/vendor_completions.d/{bin}.fish"),
            format!("usr/share/doc/{bin}/copyright"),
            format!("usr/share/doc/{bin}/changelog.gz"),
        ] {
            assert!(root.join(&file).is_file(), "/{file} not installed");
        }
        assert_eq!(
            std::fs::read(root.join(format!("lib/systemd/system/{unit}"))).expect("unit"),
            std::fs::read(repo().join("dist/systemd").join(unit)).expect("dist unit"),
            "{unit}"
        );
        let conffiles = text(
            &ok(&mut chroot(
                root,
                &["dpkg-query", "--show", "--showformat=${Conffiles}", bin],
            ))
            .stdout,
        );
        assert!(
            conffiles.contains(&format!("/etc/hvha/{bin}.toml ")),
            "{bin}: {conffiles}"
        );
        // Installed, not enabled: no symlink in multi-user.target.wants.
        assert!(
            !root
                .join("etc/systemd/system/multi-user.target.wants")
                .join(unit)
                .exists()
        );

        // --help and --version run inside the root.
        let out = ok(&mut chroot(root, &[&format!("/usr/bin/{bin}"), "--help"]));
        assert!(
            text(&out.stdout).contains("Usage:"),
            "{}",
            text(&out.stdout)
        );
        let out = ok(&mut chroot(
            root,
            &[&format!("/usr/bin/{bin}"), "--version"],
        ));
        assert_eq!(text(&out.stdout).trim(), format!("{bin} {version}"));
    }

    // The HVNCP dissector, in hactl (docs/install.md).
    assert_eq!(
        std::fs::read(root.join("usr/share/hvha/wireshark/hvncp.lua")).ok(),
        Some(std::fs::read(repo().join("dist/wireshark/hvncp.lua")).expect("the dissector")),
        "/usr/share/hvha/wireshark/hvncp.lua"
    );

    // A man page for every subcommand of hactl, at every depth, each a page man reads.
    let help = text(&ok(&mut chroot(root, &["/usr/bin/hactl", "--help"])).stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("hactl --help lists its commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");
    let man8 = root.join("usr/share/man/man8");
    for command in &commands {
        let page = man8.join(format!("hactl-{command}.8.gz"));
        assert!(page.is_file(), "{} missing", page.display());
    }
    for page in [
        "hactl-query-vm",
        "hactl-host-evacuate",
        "hactl-run",
        "vmmd-ctl",
    ] {
        let path = man8.join(format!("{page}.8.gz"));
        let roff = text(&ok(Command::new("gzip").arg("-dc").arg(&path)).stdout);
        assert!(roff.contains(&format!(".TH {page} 8 ")), "{page}: {roff}");
    }
    // Ours: the root has others (apt's).
    let pages: Vec<PathBuf> = std::fs::read_dir(&man8)
        .expect("man8")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["hmd", "vmmd", "hactl"].contains(&n.split(['-', '.']).next().unwrap_or(""))
            })
        })
        .collect();
    assert!(
        pages.len() >= commands.len() + 2,
        "{} man pages",
        pages.len()
    );
    // man-db is not in a minbase root: this machine's `man` reads each page the packages
    // installed, with groff's warnings on (none allowed).
    let has_man = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_man {
        for page in &pages {
            let out = ok(Command::new("man")
                .args(["--warnings", "--local-file"])
                .arg(page)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("LC_ALL", "C.UTF-8")
                .env("MANWIDTH", "80"));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(stderr.trim().is_empty(), "{}: {stderr}", page.display());
            assert!(
                stdout.contains("NAME") && stdout.contains("SYNOPSIS"),
                "{stdout}"
            );
        }
    } else {
        eprintln!("packages: man is not installed here: the pages were checked as roff only");
    }

    // The shipped configurations: hactl's as shipped; hmd's and vmmd's refused until
    // the site's keys are set, then valid once they are (the operator's edit, in the
    // conffile itself: purge must remove it all the same). hmd checks its interface
    // in a network namespace of its own with a veth named as in the site's keys.
    let out = ok(&mut chroot(root, &["/usr/bin/hactl", "check-config"]));
    assert!(text(&out.stdout).contains("driver = \"sim\""));
    for (bin, key) in [("hmd", "monitor_uuid"), ("vmmd", "vm_uuid")] {
        let out = run(&mut chroot(
            root,
            &[&format!("/usr/bin/{bin}"), "--check-config"],
        ));
        assert_eq!(out.status.code(), Some(2), "{bin}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("missing field `{key}`")));
    }
    let append = |file: &str, lines: &str| {
        let path = root.join(file);
        let mut text = std::fs::read_to_string(&path).expect("conffile");
        text.insert_str(0, lines);
        std::fs::write(&path, text).expect("edit conffile");
    };
    append(
        "etc/hvha/vmmd.toml",
        "vm_uuid = \"61be20f0-09a8-4753-b5e5-564f8a545ed5\"\n",
    );
    let out = ok(&mut chroot(root, &["/usr/bin/vmmd", "--check-config"]));
    assert!(text(&out.stdout).contains("apps file /var/lib/vmmd/apps.toml"));
    append(
        "etc/hvha/hmd.toml",
        "monitor_uuid = \"5c3196a3-c41f-4b5c-9861-dee6077081c6\"\nhost_id = 1\n\
         host_name = \"host1\"\ninterfaces = [\"hvpkg0\"]\n",
    );
    let out = ok(Command::new("unshare")
        .args(["--net", "--", "sh", "-ec"])
        .arg(
            "ip link add hvpkg0 type veth peer name hvpkg1; ip link set hvpkg0 up; \
             exec chroot \"$1\" /usr/bin/hmd --check-config",
        )
        .arg("sh")
        .arg(root));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("interfaces[0] hvpkg0"), "{stdout}");
    assert!(
        stdout.contains("hsdb /var/lib/hvha/hsdb.sqlite: absent, created at start"),
        "{stdout}"
    );

    // The same packages again, as an upgrade runs (prerm upgrade, postinst configure
    // with the old version): the operator's edits of the conffiles stay, no question
    // asked (the shipped files did not change).
    let mut again = vec!["dpkg", "--install"];
    again.extend(names.iter().map(String::as_str));
    std::fs::create_dir_all(&inside).expect("debs dir");
    for deb in &debs {
        std::fs::copy(deb, inside.join(deb.file_name().expect("name"))).expect("copy deb");
    }
    ok(chroot(root, &again).stdin(std::process::Stdio::null()));
    std::fs::remove_dir_all(&inside).expect("remove debs");
    let vmmd = std::fs::read_to_string(root.join("etc/hvha/vmmd.toml")).expect("vmmd.toml");
    assert!(
        vmmd.starts_with("vm_uuid = "),
        "the operator's edit lost: {vmmd}"
    );
    ok(&mut chroot(root, &["/usr/bin/vmmd", "--check-config"]));

    // Remove: everything but the conffiles goes.
    let started = Instant::now();
    let pkgs = [
        "hmd-dbgsym",
        "vmmd-dbgsym",
        "hactl-dbgsym",
        "hmd",
        "vmmd",
        "hactl",
    ];
    let mut remove = vec!["dpkg", "--remove"];
    remove.extend(pkgs);
    ok(&mut chroot(root, &remove));
    for bin in ["hmd", "vmmd", "hactl"] {
        assert!(!root.join("usr/bin").join(bin).exists(), "{bin} left");
        assert!(
            root.join(format!("etc/hvha/{bin}.toml")).is_file(),
            "{bin}.toml gone on remove"
        );
        let status = text(
            &ok(&mut chroot(
                root,
                &[
                    "dpkg-query",
                    "--show",
                    "--showformat=${db:Status-Status}",
                    bin,
                ],
            ))
            .stdout,
        );
        assert_eq!(status, "config-files", "{bin}");
    }

    // Purge: the root is as before, path for path.
    let mut purge = vec!["dpkg", "--purge"];
    purge.extend(pkgs);
    ok(&mut chroot(root, &purge));
    eprintln!(
        "packages: dpkg --remove, --purge: {:.1?}",
        started.elapsed()
    );
    let after = tree(root);
    // Only dpkg's own records of what it did may be new: its log and its backup of the
    // status file, which mmdebstrap's root does not have yet.
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|p| !["/var/lib/dpkg/status-old", "/var/log/dpkg.log"].contains(&p.as_str()))
        .collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(left.is_empty(), "left behind after purge: {left:#?}");
    assert!(gone.is_empty(), "removed by the packages: {gone:#?}");
    for pkg in pkgs {
        let out = run(&mut chroot(root, &["dpkg-query", "--status", pkg]));
        assert!(!out.status.success(), "{pkg} still known to dpkg");
    }
}

/// The scratch directory (the packages, the root), removed however the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("hvha-packages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
