//! Keys of a host group and their files.
//!
//! A key file holds one key: a line `<id> <64 hex digits>` (the id in decimal,
//! 0..=255; the key 32 bytes), with blank lines and `#` comments allowed around it. It
//! must be a regular file no group or other user may read or write (mode 0600 or
//! stricter), and at most 4 KiB long. Errors name the file and the line, never the key
//! material. Make one with
//!
//! ```text
//! (umask 077; echo "1 $(openssl rand -hex 32)" > /etc/hvha/auth.key)
//! ```

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use hmac::{KeyInit as _, Mac as _};

use super::trailer::TAG_LEN;

/// HMAC-SHA256, the MAC of the trailer (chosen by measurement, `docs/perf.md`).
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;

/// Largest key file read, in bytes.
pub const MAX_KEY_FILE_LEN: u64 = 4096;

/// One key of a host group: its id, sent in every trailer, and the HMAC state with the
/// key already absorbed (the inner and outer pads), cloned per frame.
#[derive(Clone)]
pub struct Key {
    id: u8,
    mac: HmacSha256,
}

impl Key {
    /// A key from its id and its 32 bytes.
    pub fn new(id: u8, secret: &[u8; KEY_LEN]) -> Key {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104
        // §2); padding it here is the same key and needs no fallible constructor.
        let mut block = [0u8; 64];
        block[..KEY_LEN].copy_from_slice(secret);
        Key {
            id,
            mac: HmacSha256::new(&block.into()),
        }
    }

    /// The id sent in trailers made with this key.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The truncated tag over `data`: the first [`TAG_LEN`] bytes of HMAC-SHA256.
    /// Allocates nothing.
    #[inline]
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Parse the text of a key file (see the module documentation).
    pub fn parse(text: &str) -> Result<Key, KeySyntaxError> {
        let mut found: Option<(usize, Key)> = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((first, _)) = &found {
                return Err(KeySyntaxError {
                    line: line_no,
                    why: KeySyntax::SecondKey { first: *first },
                });
            }
            let bad = |why| KeySyntaxError { line: line_no, why };
            let mut words = line.split_ascii_whitespace();
            let (Some(id), Some(hex), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad(KeySyntax::Shape));
            };
            let id: u8 = id.parse().map_err(|_| bad(KeySyntax::Id))?;
            let secret = parse_hex(hex).ok_or(bad(KeySyntax::Hex { digits: hex.len() }))?;
            found = Some((line_no, Key::new(id, &secret)));
        }
        found.map(|(_, k)| k).ok_or(KeySyntaxError {
            line: 0,
            why: KeySyntax::NoKey,
        })
    }

    /// Read and parse a key file, refusing one that group or others may read or write.
    pub fn load(path: &Path) -> Result<Key, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLarge {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let mut text = String::new();
        // `take`: the file may grow between `metadata` and the read.
        file.by_ref()
            .take(MAX_KEY_FILE_LEN)
            .read_to_string(&mut text)
            .map_err(io)?;
        Key::parse(&text).map_err(|e| KeyFileError::Syntax {
            path: path.to_owned(),
            error: e,
        })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn parse_hex(hex: &str) -> Option<[u8; KEY_LEN]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * KEY_LEN {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// What is wrong with a key file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeySyntax {
    /// No key line at all.
    #[error("no key line (expected `<id> <64 hex digits>`)")]
    NoKey,
    /// A second key line.
    #[error("a second key (the first is on line {first}); one key per file")]
    SecondKey {
        /// Line of the first key.
        first: usize,
    },
    /// Not two words.
    #[error("expected `<id> <64 hex digits>`")]
    Shape,
    /// The id is not a number 0..=255.
    #[error("the key id must be a number from 0 to 255")]
    Id,
    /// The key is not 64 hex digits.
    #[error("the key must be 64 hex digits (32 bytes), found {digits} characters")]
    Hex {
        /// Characters found.
        digits: usize,
    },
}

/// A key file's text is not valid; names the line, never the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct KeySyntaxError {
    /// 1-based line number (0 for the whole file).
    pub line: usize,
    /// What is wrong.
    pub why: KeySyntax,
}

/// A key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A directory or a device, not a regular file.
    #[error("key file {} is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read or write it.
    #[error(
        "key file {} has mode {mode:04o}: group and others must have no access (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Longer than a key file can be.
    #[error("key file {} is {len} bytes long, at most {MAX_KEY_FILE_LEN} expected", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The text is not a key.
    #[error("key file {}: {error}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        error: KeySyntaxError,
    },
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// RFC 4231 test case 2 ("Jefe"), truncated to 16 bytes: our HMAC is the standard one.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = HmacSha256::new_from_slice(b"Jefe").expect("any length");
        let key = Key { id: 0, mac };
        assert_eq!(
            key.tag(b"what do ya want for nothing?"),
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7
            ]
        );
    }

    #[test]
    fn parse_accepts_comments_and_refuses_junk() {
        let key = Key::parse(&format!("# group A\n\n  12 {HEX}  \n# end\n")).expect("valid");
        assert_eq!(key.id(), 12);
        assert_eq!(
            key.tag(b"x"),
            Key::new(
                12,
                &std::array::from_fn(|i| u8::try_from(i).expect("small"))
            )
            .tag(b"x")
        );
        let err = |text: &str| {
            Key::parse(text)
                .map(|k| k.id())
                .map_err(|e| (e.line, e.why))
        };
        assert_eq!(err("# nothing\n"), Err((0, KeySyntax::NoKey)));
        assert_eq!(
            err(&format!("1 {HEX}\n2 {HEX}")),
            Err((2, KeySyntax::SecondKey { first: 1 }))
        );
        assert_eq!(err(HEX), Err((1, KeySyntax::Shape)));
        assert_eq!(err(&format!("1 {HEX} x")), Err((1, KeySyntax::Shape)));
        assert_eq!(err(&format!("256 {HEX}")), Err((1, KeySyntax::Id)));
        assert_eq!(err(&format!("-1 {HEX}")), Err((1, KeySyntax::Id)));
        assert_eq!(
            err(&format!("1 {}", &HEX[2..])),
            Err((1, KeySyntax::Hex { digits: 62 }))
        );
        let not_hex = format!("1 {}zz", &HEX[2..]);
        assert_eq!(err(&not_hex), Err((1, KeySyntax::Hex { digits: 64 })));
        // Multi-byte characters never panic the digit loop.
        assert_eq!(
            err(&format!("1 {}é", &HEX[3..])),
            Err((1, KeySyntax::Hex { digits: 63 }))
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let text = format!("{:?}", Key::parse(&format!("3 {HEX}")).expect("valid"));
        assert_eq!(text, "Key { id: 3, .. }");
    }

    fn key_file(mode: u32, text: &str) -> tempfile::TempPath {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        f.into_temp_path()
    }

    #[test]
    fn load_checks_mode_and_names_the_file() {
        let text = format!("5 {HEX}\n");
        for mode in [0o600, 0o400] {
            let path = key_file(mode, &text);
            assert_eq!(Key::load(&path).expect("private").id(), 5, "{mode:o}");
        }
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
            let path = key_file(mode, &text);
            let e = Key::load(&path).expect_err("readable by others");
            assert!(matches!(e, KeyFileError::Permissions { mode: m, .. } if m == mode));
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
        let path = key_file(0o600, &format!("5 {}", &HEX[1..]));
        let msg = Key::load(&path).expect_err("bad hex").to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("line 1"),
            "{msg}"
        );
        assert!(
            !msg.contains(&HEX[1..20]),
            "the key material stays out: {msg}"
        );
        let path = key_file(0o600, &"#".repeat(5000));
        assert!(matches!(
            Key::load(&path),
            Err(KeyFileError::TooLarge { len: 5000, .. })
        ));
        let dir = tempfile::tempdir().expect("dir");
        assert!(matches!(
            Key::load(dir.path()),
            Err(KeyFileError::NotAFile { .. })
        ));
        let missing = dir.path().join("none");
        assert!(matches!(Key::load(&missing), Err(KeyFileError::Io { .. })));
    }
}
