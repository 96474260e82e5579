//! Man pages and shell completions generated from a program's command-line definition,
//! so that they never drift from `--help`: each of `hmd`, `vmmd` and `hactl`, run as
//! `PROGRAM --gen-docs DIR` (exactly these two arguments), calls [`write()`] with its own
//! definition, and `scripts/build-debs` puts what it writes into the packages
//! (docs/install.md). The option is looked for before clap parses the arguments
//! ([`requested`]), so it appears in no `--help`, man page or completion (clap's
//! completion generators list hidden subcommands and options).
//!
//! Under `DIR`:
//!
//! - `man/man8/NAME.8`, and one page per subcommand at every depth, named after its path:
//!   `hactl-query-vm.8` for `hactl query vm` (section 8: daemons and administration
//!   commands). Hidden subcommands and clap's `help` get none.
//! - `completions/bash/NAME`, `completions/zsh/_NAME`, `completions/fish/NAME.fish`: the
//!   file names the shells look for in Debian's directories
//!   (`/usr/share/bash-completion/completions/`, `/usr/share/zsh/vendor-completions/`,
//!   `/usr/share/fish/vendor_completions.d/`).
//!
//! The pages' date is `SOURCE_DATE_EPOCH`'s day when that variable holds a number of
//! seconds (reproducible builds), else today's (UTC).

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Where [`write()`] puts the pages, relative to its directory.
pub const MAN_DIR: &str = "man/man8";
/// The man pages' section.
pub const SECTION: &str = "8";

/// The directory of `PROGRAM --gen-docs DIR`, when the process was started with exactly
/// these arguments.
pub fn requested() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next(), args.next()) {
        (Some(flag), Some(dir), None) if flag == "--gen-docs" => Some(PathBuf::from(dir)),
        _ => None,
    }
}

/// `PROGRAM --gen-docs DIR`: [`write()`], then a line per file on standard output; exit 0,
/// or 1 with the error on standard error.
pub fn main(cmd: clap::Command, dir: &Path) -> std::process::ExitCode {
    let name = cmd.get_name().to_owned();
    match write(cmd, dir) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: --gen-docs {}: {e}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Write the man pages and completions of the program `cmd` (its top-level definition,
/// as `Cli::command()` gives it) under `dir`, creating the directories. Returns the
/// files written, man pages first, in the order written.
pub fn write(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let date = page_date(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref());
    let man_dir = dir.join(MAN_DIR);
    std::fs::create_dir_all(&man_dir)?;
    let mut written = Vec::new();
    let mut pending = vec![cmd.clone()];
    while let Some(page) = pending.pop() {
        pending.extend(
            page.get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .cloned(),
        );
        let man = clap_mangen::Man::new(page)
            .section(SECTION)
            .date(date.clone())
            .source(format!("hvha {version}"))
            .manual("hvha");
        let path = man_dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let out = dir.join("completions").join(sub);
        std::fs::create_dir_all(&out)?;
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut text);
        let path = out.join(file);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// `YYYY-MM-DD` of `SOURCE_DATE_EPOCH` (seconds since 1970, UTC) when it is a number,
/// else of now.
fn page_date(source_date_epoch: Option<&str>) -> String {
    let secs = source_date_epoch
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let (y, m, d) = civil_from_days(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(page_date(Some("0")), "1970-01-01");
        assert_eq!(page_date(Some("951782400")), "2000-02-29");
        assert_eq!(page_date(Some("1764547200")), "2025-12-01");
        // Not a number: today, which is after the dates above.
        assert!(page_date(Some("yesterday")).as_str() > "2025-12-01");
    }

    #[test]
    fn pages_for_every_visible_subcommand_and_three_shells() {
        let cmd = clap::Command::new("prog")
            .version("1.2.3")
            .about("A program.")
            .subcommand(
                clap::Command::new("query")
                    .about("Read things.")
                    .subcommand(clap::Command::new("vm").about("One VM.")),
            )
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<String> = write(cmd, dir.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "completions/bash/prog",
                "completions/fish/prog.fish",
                "completions/zsh/_prog",
                "man/man8/prog-query-vm.8",
                "man/man8/prog-query.8",
                "man/man8/prog.8",
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("man/man8/prog-query-vm.8")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH prog-query-vm 8"), "{page}");
        assert!(page.contains("One VM."), "{page}");
        assert!(page.contains("hvha 1.2.3"), "{page}");
        let top = std::fs::read_to_string(dir.path().join("man/man8/prog.8")).unwrap();
        assert!(top.contains("prog\\-query(8)"), "{top}");
        assert!(!top.contains("secret"), "{top}");
        let bash = std::fs::read_to_string(dir.path().join("completions/bash/prog")).unwrap();
        assert!(bash.contains("complete -F _prog"), "{bash}");
        assert!(bash.contains("prog__subcmd__query__subcmd__vm"), "{bash}");
        let zsh = std::fs::read_to_string(dir.path().join("completions/zsh/_prog")).unwrap();
        assert!(zsh.starts_with("#compdef prog"), "{zsh}");
        let fish = std::fs::read_to_string(dir.path().join("completions/fish/prog.fish")).unwrap();
        assert!(fish.contains("complete -c prog"), "{fish}");
    }
}
