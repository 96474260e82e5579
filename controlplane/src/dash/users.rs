//! The dashboard's users file: one account a line, `name:role:$argon2id$…` (the PHC
//! string of the password's hash), `#` comments and blank lines allowed.
//!
//! ```text
//! # hvha dashboard users (hactl dashboard user add|passwd|remove|list)
//! alice:operator:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$…
//! bob:read-only:$argon2id$v=19$m=19456,t=2,p=1$…
//! ```
//!
//! Hashes are argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1). A bad line
//! is an error naming the file and the line; a file others can write is refused (an
//! account could be added behind the operator's back). `hactl run` refuses to start on a
//! broken file and re-reads it when its modification time changes, keeping the last good
//! accounts when a new version is broken (and logging why).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::Role;

/// Longest users file, in bytes.
pub const MAX_FILE: u64 = 1024 * 1024;
/// Most accounts.
pub const MAX_USERS: usize = 10_000;
/// Longest account name.
pub const MAX_NAME: usize = 64;
/// Longest password, in bytes (argon2 takes any; a bound keeps a request's cost fixed).
pub const MAX_PASSWORD: usize = 1024;
/// OWASP's argon2id memory cost, KiB.
pub const M_COST: u32 = 19_456;
/// OWASP's argon2id iterations.
pub const T_COST: u32 = 2;
/// OWASP's argon2id parallelism.
pub const P_COST: u32 = 1;
/// Most memory a hash in the file may ask for (a hash costing more is refused: every
/// login verifies one).
pub const MAX_M_COST: u32 = 256 * 1024;
/// Most iterations a hash in the file may ask for.
pub const MAX_T_COST: u32 = 16;
/// Most lanes a hash in the file may ask for.
pub const MAX_P_COST: u32 = 8;
/// How often a login looks at the file's modification time.
pub const RECHECK: Duration = Duration::from_secs(1);

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The PHC string of its password's argon2id hash.
    pub hash: String,
}

/// What is wrong with a users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// It cannot be read.
    #[error("users file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may write it.
    #[error(
        "users file {}: mode {mode:04o} lets group or others change it (an account could be \
         added): chmod 600 it",
        path.display()
    )]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Too big.
    #[error("users file {}: longer than {MAX_FILE} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line is wrong.
    #[error("users file {} line {line}: {why}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// It cannot be written.
    #[error("users file {}: cannot write it: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An account name: 1..=64 letters, digits, `.`, `_`, `-`, `@`, not starting with `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a name of 1..={MAX_NAME} letters, digits, '.', '_', '-' or '@', not starting \
             with '-'"
        ))
    }
}

/// Check a PHC string: argon2id, parameters within bounds.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let phc = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if phc.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm {:?}: expected argon2id",
            phc.algorithm.as_str()
        ));
    }
    let params = Params::try_from(&phc).map_err(|e| format!("argon2id parameters: {e}"))?;
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "argon2id parameters m={},t={},p={} cost more than a login may (at most \
             m={MAX_M_COST},t={MAX_T_COST},p={MAX_P_COST})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    if phc.hash.is_none() || phc.salt.is_none() {
        return Err("the hash has no salt or no output".into());
    }
    Ok(())
}

/// Parse the file's text (`path` is named in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Account>, UsersError> {
    let mut accounts: Vec<Account> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let bad = |why: String| UsersError::Line {
            path: path.to_owned(),
            line: line_no,
            why,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected name:role:$argon2id$… (three fields)".into()));
        };
        check_name(name).map_err(|allowed| bad(format!("user {name:?}: expected {allowed}")))?;
        let role = Role::parse(role).ok_or_else(|| {
            bad(format!(
                "user {name}: role {role:?}: expected \"read-only\" or \"operator\""
            ))
        })?;
        check_hash(hash).map_err(|why| bad(format!("user {name}: {why}")))?;
        if accounts.iter().any(|a| a.name == name) {
            return Err(bad(format!("user {name} is listed twice")));
        }
        if accounts.len() == MAX_USERS {
            return Err(bad(format!("more than {MAX_USERS} users")));
        }
        accounts.push(Account {
            name: name.to_owned(),
            role,
            hash: hash.to_owned(),
        });
    }
    Ok(accounts)
}

/// Read and check the file: a regular file, not writable by group or others, at most
/// [`MAX_FILE`] bytes, every line good. Also returns its modification time.
pub fn load(path: &Path) -> Result<(Vec<Account>, Option<SystemTime>), UsersError> {
    use std::io::Read as _;
    let read = |source| UsersError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(UsersError::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(UsersError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        UsersError::Line {
            path: path.to_owned(),
            line: upto.iter().filter(|&&b| b == b'\n').count() + 1,
            why: "not UTF-8".into(),
        }
    })?;
    Ok((parse(&text, path)?, meta.modified().ok()))
}

/// The file's text for `accounts`.
pub fn render(accounts: &[Account]) -> String {
    let mut out = String::from(
        "# hvha dashboard users: name:role:argon2id hash (role read-only or operator)\n\
         # managed with `hactl dashboard user add|passwd|remove|list`\n",
    );
    for a in accounts {
        out.push_str(&format!("{}:{}:{}\n", a.name, a.role, a.hash));
    }
    out
}

/// Write the file atomically: a temporary file beside it (mode 0600), fsync, rename,
/// fsync of the directory.
pub fn save(path: &Path, accounts: &[Account]) -> Result<(), UsersError> {
    let write = |source| UsersError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dashboard-users".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An existing temporary file keeps its old mode: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(render(accounts).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write)
}

fn hasher() -> Argon2<'static> {
    // The constants are valid parameters; the fallback is never taken.
    let params = Params::new(M_COST, T_COST, P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password: argon2id, OWASP's parameters, a 16-byte random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash` (false for a bad hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &phc)
        .is_ok()
}

/// Check a new password's text: 8..=1024 bytes, no control characters.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.len() < 8 {
        return Err("a password of at least 8 characters".into());
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("a password of at most {MAX_PASSWORD} bytes"));
    }
    if password.chars().any(char::is_control) {
        return Err("a password without control characters".into());
    }
    Ok(())
}

/// The accounts `hactl run` uses: loaded at start, re-read when the file changes.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    accounts: Arc<Vec<Account>>,
    /// The modification time of the file the accounts came from.
    mtime: Option<SystemTime>,
    /// The modification time of a version refused (not logged again).
    refused: Option<SystemTime>,
    checked: Instant,
}

impl UserStore {
    /// Load the file; an error if it is broken (the daemon does not start).
    pub fn open(path: &Path) -> Result<UserStore, UsersError> {
        let (accounts, mtime) = load(path)?;
        if accounts.is_empty() {
            tracing::warn!(
                users_file = %path.display(),
                "the dashboard's users file has no account: nobody can log in \
                 (hactl dashboard user add NAME --role operator)"
            );
        }
        Ok(UserStore {
            path: path.to_owned(),
            state: Mutex::new(Loaded {
                accounts: Arc::new(accounts),
                mtime,
                refused: None,
                checked: Instant::now(),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current accounts, the file re-read first if it changed (at most every
    /// [`RECHECK`]). A broken new version is refused and logged once; the last good
    /// accounts stay.
    pub fn accounts(&self) -> Arc<Vec<Account>> {
        let Ok(mut state) = self.state.lock() else {
            return Arc::new(Vec::new());
        };
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        Arc::clone(&state.accounts)
    }

    /// Re-read now if the modification time changed.
    pub fn refresh(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
    }

    fn reload(&self, state: &mut Loaded) {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime == state.mtime || (mtime.is_some() && mtime == state.refused) {
            return;
        }
        match load(&self.path) {
            Ok((accounts, mtime)) => {
                tracing::info!(
                    users_file = %self.path.display(),
                    users = accounts.len(),
                    "dashboard users file changed: re-read"
                );
                state.accounts = Arc::new(accounts);
                state.mtime = mtime;
                state.refused = None;
            }
            Err(e) => {
                tracing::error!(
                    "{e}: the new version is refused; the dashboard keeps the {} accounts \
                     it had",
                    state.accounts.len()
                );
                state.refused = mtime;
            }
        }
    }

    /// The account `name`, as the file says now.
    pub fn find(&self, name: &str) -> Option<Account> {
        self.accounts().iter().find(|a| a.name == name).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify_and_carry_owasp_parameters() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("x", "not a hash"));
        check_hash(&h).unwrap();
    }

    #[test]
    fn bad_lines_name_the_line() {
        let h = hash_password("password1").unwrap();
        let p = Path::new("/etc/hvha/dashboard-users");
        let ok = format!("# c\n\nalice:operator:{h}\nbob:read-only:{h}\n");
        let a = parse(&ok, p).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].role, Role::ReadOnly);
        for (text, line, word) in [
            (format!("# c\nalice:admin:{h}\n"), 2, "admin"),
            (
                format!("alice:operator:{h}\nalice:operator:{h}\n"),
                2,
                "twice",
            ),
            ("alice:operator\n".to_owned(), 1, "three fields"),
            (
                "alice:operator:$2b$10$abcdefghijklmnopqrstuv\n".to_owned(),
                1,
                "PHC",
            ),
            (format!("-x:operator:{h}\n"), 1, "name"),
            (
                format!("a:operator:{}\n", h.replace("argon2id", "argon2i")),
                1,
                "argon2id",
            ),
            (
                format!("a:operator:{}\n", h.replace("m=19456", "m=4000000")),
                1,
                "cost",
            ),
        ] {
            match parse(&text, p) {
                Err(UsersError::Line { line: l, why, .. }) => {
                    assert_eq!(l, line, "{text}: {why}");
                    assert!(why.contains(word), "{why}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = parse("x\n", p).unwrap_err().to_string();
        assert!(
            e.starts_with("users file /etc/hvha/dashboard-users line 1:"),
            "{e}"
        );
    }

    #[test]
    fn save_is_0600_and_a_writable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let acc = vec![Account {
            name: "alice".into(),
            role: Role::Operator,
            hash: hash_password("password1").unwrap(),
        }];
        save(&path, &acc).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().0, acc);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(matches!(
            load(&path),
            Err(UsersError::Mode { mode: 0o620, .. })
        ));
    }
}
