//! `hactl dashboard user add|passwd|remove|list`: the users file managed from the command
//! line. Passwords come from standard input (a line; asked twice without echo on a
//! terminal) or from `--password-file`, never from the command line (it shows in `ps`
//! and the shell's history). Every change rewrites the file atomically, mode 0600; a
//! running `hactl run` picks it up within a second.

use std::io::{BufRead, Write};
use std::path::Path;

use super::Role;
use super::users::{self, Account, UsersError};

/// What went wrong with a command.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The users file.
    #[error(transparent)]
    File(#[from] UsersError),
    /// A bad argument or password.
    #[error("{0}")]
    Value(String),
    /// The user does not exist.
    #[error("no user {name} in {}", path.display())]
    NotFound {
        /// The name.
        name: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// Reading the password failed.
    #[error("cannot read the password: {0}")]
    Input(std::io::Error),
}

/// Where the password comes from.
#[derive(Debug, Clone)]
pub enum PasswordSource<'a> {
    /// Standard input: a line (asked twice without echo on a terminal).
    Stdin,
    /// The first line of a file.
    File(&'a Path),
}

/// The accounts of `path`; none when the file does not exist yet.
fn current(path: &Path) -> Result<Vec<Account>, UsersError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    users::load(path).map(|(a, _)| a)
}

/// Read the password, check it, hash it.
pub fn read_password(source: &PasswordSource<'_>, name: &str) -> Result<String, AccountError> {
    let password = match source {
        PasswordSource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                AccountError::Value(format!("--password-file {}: {e}", p.display()))
            })?;
            first_line(&text)
        }
        PasswordSource::Stdin => {
            let stdin = std::io::stdin();
            if rustix::termios::isatty(&stdin) {
                let first = prompt_hidden(&format!("Password for {name}: "))?;
                let again = prompt_hidden("Again: ")?;
                if first != again {
                    return Err(AccountError::Value("the two passwords differ".into()));
                }
                first
            } else {
                let mut line = String::new();
                stdin
                    .lock()
                    .take_line(&mut line)
                    .map_err(AccountError::Input)?;
                first_line(&line)
            }
        }
    };
    users::check_password(&password)
        .map_err(|allowed| AccountError::Value(format!("password: expected {allowed}")))?;
    Ok(password)
}

trait TakeLine {
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        use std::io::Read as _;
        // One line of at most MAX_PASSWORD + 2 bytes.
        let mut bytes = Vec::new();
        let limit = u64::try_from(users::MAX_PASSWORD + 2).unwrap_or(u64::MAX);
        let n = self.take(limit).read_until(b'\n', &mut bytes)?;
        *line = String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the password is not UTF-8")
        })?;
        Ok(n)
    }
}

fn first_line(text: &str) -> String {
    let line = text.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line).to_owned()
}

fn prompt_hidden(prompt: &str) -> Result<String, AccountError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let saved = tcgetattr(&stdin).map_err(|e| AccountError::Input(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes -= LocalModes::ECHO;
    tcsetattr(&stdin, OptionalActions::Now, &quiet).map_err(|e| AccountError::Input(e.into()))?;
    let mut line = String::new();
    let read = stdin.lock().take_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    let _ = writeln!(err);
    read.map_err(AccountError::Input)?;
    Ok(first_line(&line))
}

fn check_name(name: &str) -> Result<(), AccountError> {
    users::check_name(name)
        .map_err(|allowed| AccountError::Value(format!("NAME = {name:?}: expected {allowed}")))
}

/// Add `name` with `role` and the password.
pub fn add(path: &Path, name: &str, role: Role, password: &str) -> Result<String, AccountError> {
    check_name(name)?;
    let mut accounts = current(path)?;
    if accounts.iter().any(|a| a.name == name) {
        return Err(AccountError::Value(format!(
            "user {name} exists in {} (hactl dashboard user passwd {name} changes its password)",
            path.display()
        )));
    }
    let hash = users::hash_password(password).map_err(AccountError::Value)?;
    accounts.push(Account {
        name: name.to_owned(),
        role,
        hash,
    });
    users::save(path, &accounts)?;
    Ok(format!(
        "user {name} ({role}) added to {}\n",
        path.display()
    ))
}

/// Change `name`'s password (and its role, if given).
pub fn passwd(
    path: &Path,
    name: &str,
    role: Option<Role>,
    password: &str,
) -> Result<String, AccountError> {
    check_name(name)?;
    let mut accounts = current(path)?;
    let Some(a) = accounts.iter_mut().find(|a| a.name == name) else {
        return Err(AccountError::NotFound {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    };
    a.hash = users::hash_password(password).map_err(AccountError::Value)?;
    if let Some(role) = role {
        a.role = role;
    }
    let role = a.role;
    users::save(path, &accounts)?;
    Ok(format!(
        "password of {name} ({role}) changed in {}\n",
        path.display()
    ))
}

/// Remove `name` (its sessions end at their next request).
pub fn remove(path: &Path, name: &str) -> Result<String, AccountError> {
    check_name(name)?;
    let mut accounts = current(path)?;
    let before = accounts.len();
    accounts.retain(|a| a.name != name);
    if accounts.len() == before {
        return Err(AccountError::NotFound {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    }
    users::save(path, &accounts)?;
    Ok(format!("user {name} removed from {}\n", path.display()))
}

/// The users and their roles (never the hashes).
pub fn list(path: &Path, json: bool) -> Result<String, AccountError> {
    let accounts = users::load(path)?.0;
    if json {
        let list: Vec<serde_json::Value> = accounts
            .iter()
            .map(|a| serde_json::json!({ "name": a.name, "role": a.role.as_str() }))
            .collect();
        return Ok(format!("{}\n", serde_json::Value::Array(list)));
    }
    let mut out = format!("{:<32} ROLE\n", "USER");
    for a in &accounts {
        out.push_str(&format!("{:<32} {}\n", a.name, a.role));
    }
    if accounts.is_empty() {
        out.push_str(&format!("(no users in {})\n", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn add_passwd_remove_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        add(&path, "alice", Role::Operator, "password1").unwrap();
        add(&path, "bob", Role::ReadOnly, "password2").unwrap();
        assert!(add(&path, "bob", Role::ReadOnly, "password2").is_err());
        assert!(add(&path, "b b", Role::ReadOnly, "password2").is_err());
        let listed = list(&path, false).unwrap();
        assert!(
            listed.contains("alice") && listed.contains("read-only"),
            "{listed}"
        );
        assert!(!listed.contains("argon2"), "{listed}");
        passwd(&path, "bob", Some(Role::Operator), "password3").unwrap();
        let (acc, _) = users::load(&path).unwrap();
        assert_eq!(acc[1].role, Role::Operator);
        assert!(users::verify_password("password3", &acc[1].hash));
        remove(&path, "alice").unwrap();
        assert!(matches!(
            remove(&path, "alice"),
            Err(AccountError::NotFound { .. })
        ));
        assert_eq!(users::load(&path).unwrap().0.len(), 1);
        let json = list(&path, true).unwrap();
        assert_eq!(json.trim(), r#"[{"name":"bob","role":"operator"}]"#);
    }

    #[test]
    fn passwords_from_a_file_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "short\n").unwrap();
        assert!(read_password(&PasswordSource::File(&p), "a").is_err());
        std::fs::write(&p, "long enough\r\nsecond line\n").unwrap();
        assert_eq!(
            read_password(&PasswordSource::File(&p), "a").unwrap(),
            "long enough"
        );
    }
}
