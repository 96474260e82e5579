//! The dashboard over real TCP on 127.0.0.1: a real SQLite HSDB file, a real users file,
//! HTTPS with a certificate made here. What a browser (or an attacker) sees: login,
//! cookies, redirects, CSRF, roles, limits, slow and broken clients, TLS, the live
//! stream, and the configuration's refusals.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::cli::config::{Config, ConfigError, HsdbLocation};
use controlplane::dash::config::{DashboardConfig, TlsFiles};
use controlplane::dash::server::Limits;
use controlplane::dash::users::{self, Account};
use controlplane::dash::{DashError, Dashboard, Role};

const ALICE_PW: &str = "alice-password";
const BOB_PW: &str = "bob-password";

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    users: PathBuf,
    dash: Dashboard,
    addr: SocketAddr,
}

fn config(dir: &Path) -> Config {
    let hsdb = dir.join("hsdb.sqlite");
    if !hsdb.exists() {
        hsdb::Hsdb::open(&hsdb, &hsdb::Options::default()).unwrap();
    }
    Config::without_file(HsdbLocation::Sqlite(hsdb))
}

fn write_users(path: &Path) {
    users::save(
        path,
        &[
            Account {
                name: "alice".into(),
                role: Role::Operator,
                hash: users::hash_password(ALICE_PW).unwrap(),
            },
            Account {
                name: "bob".into(),
                role: Role::ReadOnly,
                hash: users::hash_password(BOB_PW).unwrap(),
            },
        ],
    )
    .unwrap();
}

fn lab_with(limits: Limits, tweak: impl FnOnce(&mut DashboardConfig, &Path)) -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let users = dir.join("dashboard-users");
    write_users(&users);
    let mut dash = DashboardConfig::plain("127.0.0.1:0".parse().unwrap(), users.clone());
    tweak(&mut dash, &dir);
    let dashboard = Dashboard::start_with(&config(&dir), &dash, limits).unwrap();
    let addr = dashboard.local_addr();
    Lab {
        _dir: tmp,
        dir,
        users,
        dash: dashboard,
        addr,
    }
}

fn lab() -> Lab {
    lab_with(Limits::default(), |_, _| {})
}

/// A response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// The session token a Set-Cookie gave.
    fn session(&self) -> Option<String> {
        let c = self.header("set-cookie")?;
        let v = c.strip_prefix("hvha_session=")?.split(';').next()?;
        (!v.is_empty()).then(|| v.to_owned())
    }
}

fn parse_reply(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let cookie = cookie
        .map(|c| format!("Cookie: hvha_session={c}\r\n"))
        .unwrap_or_default();
    parse_reply(&raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n").as_bytes(),
    ))
}

fn post(addr: SocketAddr, path: &str, cookie: Option<&str>, extra: &str, body: &str) -> Reply {
    let cookie = cookie
        .map(|c| format!("Cookie: hvha_session={c}\r\n"))
        .unwrap_or_default();
    parse_reply(&raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}{extra}Content-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    ))
}

fn login(addr: SocketAddr, user: &str, pw: &str) -> Reply {
    post(
        addr,
        "/login",
        None,
        "",
        &format!("username={user}&password={pw}&next=%2Fvms"),
    )
}

/// Log in and find the session's CSRF token on the page (the hidden `csrf` field).
fn session(addr: SocketAddr, user: &str, pw: &str) -> (String, String) {
    let r = login(addr, user, pw);
    assert_eq!(r.status, 303, "{r:?}");
    let token = r.session().unwrap();
    let page = get(addr, "/", Some(&token));
    assert_eq!(page.status, 200, "{page:?}");
    let at = page.body.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = page.body[at..at + 64].to_owned();
    (token, csrf)
}

#[test]
fn login_ok_wrong_password_unknown_user_and_cookie_flags() {
    let lab = lab();
    let page = get(lab.addr, "/login", None);
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<form id=\"login\" method=\"post\" action=\"/login\">")
    );
    assert!(!page.body.contains("class=\"error\""));

    let ok = login(lab.addr, "alice", ALICE_PW);
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.header("location").as_deref(), Some("/vms"));
    let cookie = ok.header("set-cookie").unwrap();
    assert!(cookie.starts_with("hvha_session="), "{cookie}");
    let token = ok.session().unwrap();
    assert_eq!(token.len(), 64, "256 bits in hex");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let home = get(lab.addr, "/", Some(&token));
    assert_eq!(home.status, 200);
    assert!(home.body.contains("data-user=\"alice\""), "{}", home.body);
    assert!(home.body.contains("data-role=\"operator\""));
    // Security headers on every page.
    assert_eq!(
        home.header("content-security-policy").as_deref(),
        Some("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    );
    assert_eq!(
        home.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        home.header("referrer-policy").as_deref(),
        Some("same-origin")
    );
    assert_eq!(home.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(home.header("connection").as_deref(), Some("close"));

    for (user, pw) in [("alice", "wrong-password"), ("mallory", "whatever-pw")] {
        let bad = login(lab.addr, user, pw);
        assert_eq!(bad.status, 401, "{user}: {bad:?}");
        assert!(bad.session().is_none());
        assert!(bad.body.contains("<p class=\"error\""), "{}", bad.body);
        assert!(bad.body.contains("<form id=\"login\""));
    }
    // An unknown user costs the same work as a known one (a dummy hash is verified).
    let time = |user: &str| {
        let t = Instant::now();
        login(lab.addr, user, "not-the-password");
        t.elapsed()
    };
    // Interleaved, the fastest of each (other tests share the CPU): an unknown name is
    // not answered faster (no hash verified would take a fraction of the time).
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..4 {
        known = known.min(time("bob"));
        unknown = unknown.min(time("nobody"));
    }
    assert!(
        unknown * 3 > known && known * 3 > unknown,
        "known {known:?} unknown {unknown:?}"
    );

    // A `next` elsewhere is ignored.
    let r = post(
        lab.addr,
        "/login",
        None,
        "",
        &format!("username=alice&password={ALICE_PW}&next=%2F%2Fevil.example%2F"),
    );
    assert_eq!(r.header("location").as_deref(), Some("/"));

    // Logout ends the session.
    let (token, csrf) = session(lab.addr, "alice", ALICE_PW);
    let out = post(
        lab.addr,
        "/logout",
        Some(&token),
        "",
        &format!("csrf={csrf}"),
    );
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(lab.addr, "/", Some(&token)).status, 303);
    drop(lab.dash);
}

#[test]
fn without_a_session_get_redirects_and_post_is_401() {
    let lab = lab();
    let r = get(lab.addr, "/vms?x=1", None);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/login?next=%2Fvms%3Fx%3D1")
    );
    let r = get(lab.addr, "/", Some(&"0".repeat(64)));
    assert_eq!(r.status, 303, "an unknown token is no session");
    assert_eq!(post(lab.addr, "/action/ack", None, "", "tag=1").status, 401);
    assert_eq!(get(lab.addr, "/stream", None).status, 401);
    // Logging out without a session (expired, a restart) only goes to the login page.
    let out = post(lab.addr, "/logout", None, "", "");
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location").as_deref(), Some("/login"));
    // Static files need no session.
    let js = get(lab.addr, "/static/app.js", None);
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(get(lab.addr, "/static/nope.js", None).status, 404);
    let icon = get(lab.addr, "/favicon.ico", None);
    assert_eq!(icon.status, 200, "{icon:?}");
    assert!(icon.header("content-type").unwrap().starts_with("image/"));
    let r = parse_reply(&raw(lab.addr, b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(r.status, 405);
}

#[test]
fn csrf_roles_and_actions() {
    let lab = lab();
    let (alice, csrf) = session(lab.addr, "alice", ALICE_PW);
    // Missing, wrong, cross-origin: 403, and the action is not run.
    let missing = post(lab.addr, "/action/ack", Some(&alice), "", "tag=1");
    assert_eq!(missing.status, 403, "{missing:?}");
    let wrong = post(
        lab.addr,
        "/action/ack",
        Some(&alice),
        "",
        &format!("tag=1&csrf={}", "a".repeat(64)),
    );
    assert_eq!(wrong.status, 403);
    let cross = post(
        lab.addr,
        "/action/ack",
        Some(&alice),
        "Origin: https://evil.example\r\n",
        &format!("tag=1&csrf={csrf}"),
    );
    assert_eq!(cross.status, 403);
    assert!(cross.body.contains("evil.example"), "{}", cross.body);
    let referer = post(
        lab.addr,
        "/action/ack",
        Some(&alice),
        "Referer: http://evil.example/page\r\n",
        &format!("tag=1&csrf={csrf}"),
    );
    assert_eq!(referer.status, 403);
    // The operator's POST with the token and this server's origin reaches the action.
    let ok = post(
        lab.addr,
        "/action/ack",
        Some(&alice),
        &format!("Origin: http://{}\r\n", lab.addr),
        &format!("tag=1&csrf={csrf}"),
    );
    assert_eq!(ok.status, 303, "{ok:?}");
    // The views acknowledged hsTag 1 (nothing carried it) and send the operator back.
    assert!(
        ok.header("location")
            .is_some_and(|l| l.starts_with("/?ok=ack&ref=hsTag%201")),
        "{ok:?}"
    );

    // A read-only user: 403 even with a valid token.
    let (bob, bob_csrf) = session(lab.addr, "bob", BOB_PW);
    let refused = post(
        lab.addr,
        "/action/ack",
        Some(&bob),
        "",
        &format!("tag=1&csrf={bob_csrf}"),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("read-only"), "{}", refused.body);
    // Another session's token is not this one's.
    let stolen = post(
        lab.addr,
        "/action/ack",
        Some(&alice),
        "",
        &format!("tag=1&csrf={bob_csrf}"),
    );
    assert_eq!(stolen.status, 403);
}

#[test]
fn oversized_requests_are_refused() {
    let lab = lab();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    assert_eq!(parse_reply(&raw(lab.addr, big.as_bytes())).status, 431);
    let body = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        65 * 1024
    );
    assert_eq!(parse_reply(&raw(lab.addr, body.as_bytes())).status, 413);
    let chunked = "POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(parse_reply(&raw(lab.addr, chunked.as_bytes())).status, 501);
}

#[test]
fn a_slow_client_is_cut_off() {
    let lab = lab_with(
        Limits {
            request_timeout: Duration::from_millis(800),
            write_timeout: Duration::from_secs(2),
        },
        |_, _| {},
    );
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    // A byte every 100 ms never completes the head within the timeout.
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = started.elapsed();
    assert_eq!(
        parse_reply(&out).status,
        408,
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    // The server still answers.
    assert_eq!(get(lab.addr, "/login", None).status, 200);
}

#[test]
fn garbage_never_stops_the_server() {
    let lab = lab();
    // A small deterministic generator: no dependency for randomness in a test.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let form = "username=a%20b&password=c+d&x";
    let valid = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nCookie: hvha_session=abc\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        lab.addr,
        form.len()
    );
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000u32 {
        let mut bytes: Vec<u8> = if i % 3 == 0 {
            let n = usize::try_from(next() % 300).unwrap();
            (0..n)
                .map(|_| u8::try_from(next() & 0xff).unwrap())
                .collect()
        } else {
            valid.as_bytes().to_vec()
        };
        if i % 3 != 0 {
            // Mutate a valid request: flip, insert, cut.
            for _ in 0..1 + next() % 8 {
                let at = usize::try_from(next() % bytes.len().max(1) as u64).unwrap();
                match next() % 3 {
                    0 => bytes[at] = u8::try_from(next() & 0xff).unwrap(),
                    1 => bytes.insert(at, b"%\r\n:=&?/\0"[usize::try_from(next() % 9).unwrap()]),
                    _ => bytes.truncate(at.max(1)),
                }
            }
        }
        let mut s = TcpStream::connect(lab.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        *statuses.entry(parse_reply(&out).status).or_insert(0u32) += 1;
    }
    eprintln!("statuses over 1000 garbage requests: {statuses:?}");
    assert!(
        statuses
            .keys()
            .all(|s| [0, 303, 400, 401, 403, 404, 405, 413, 415, 429, 431, 501].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&401).copied().unwrap_or(0) + statuses.get(&429).copied().unwrap_or(0) > 0,
        "some mutated logins reached the password check: {statuses:?}"
    );
    // Still answering; a login goes through (or waits out the failures of this address).
    assert_eq!(get(lab.addr, "/login", None).status, 200);
    let status = login(lab.addr, "alice", ALICE_PW).status;
    assert!(status == 303 || status == 429, "{status}");
}

#[test]
fn the_users_file_bad_lines_and_reloading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let users_path = dir.join("users");
    let h = users::hash_password("password1").unwrap();
    std::fs::write(
        &users_path,
        format!("# ok\nalice:operator:{h}\nbob:admin:{h}\n"),
    )
    .unwrap();
    let mode = |m| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&users_path, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o600);
    let dash = DashboardConfig::plain("127.0.0.1:0".parse().unwrap(), users_path.clone());
    let e = Dashboard::start(&config(dir), &dash).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DashError::Users(_)), "{text}");
    assert!(
        text.contains(&format!("{} line 3", users_path.display())),
        "{text}"
    );
    assert!(text.contains("admin"), "{text}");
    // Group-writable: refused.
    write_users(&users_path);
    mode(0o660);
    let e = Dashboard::start(&config(dir), &dash)
        .unwrap_err()
        .to_string();
    assert!(e.contains("chmod 600"), "{e}");
    mode(0o600);

    // Running: a broken new version is refused, the last good accounts stay; a good one
    // is taken.
    let lab = lab();
    assert_eq!(login(lab.addr, "alice", ALICE_PW).status, 303);
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&lab.users, "alice:root:x\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        login(lab.addr, "alice", ALICE_PW).status,
        303,
        "last good file kept"
    );
    let carol = Account {
        name: "carol".into(),
        role: Role::ReadOnly,
        hash: users::hash_password("carol-password").unwrap(),
    };
    users::save(&lab.users, &[carol]).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(login(lab.addr, "carol", "carol-password").status, 303);
    assert_eq!(
        login(lab.addr, "alice", ALICE_PW).status,
        401,
        "alice was removed"
    );
    let _ = &lab.dir;
}

/// A certificate for `localhost` and its key, as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

#[test]
fn tls_serves_with_the_operators_certificate_and_refuses_plain_http() {
    let mut der = Vec::new();
    let lab = lab_with(Limits::default(), |d, dir| {
        let (cert, key, cert_der) = certificate(dir, "dash");
        der = cert_der;
        d.tls = Some(TlsFiles { cert, key });
    });
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = |request: String| {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client.clone()), name).unwrap();
        let tcp = TcpStream::connect(lab.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        parse_reply(&out)
    };
    let page = https(format!(
        "GET /login HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        lab.addr.port()
    ));
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<form id=\"login\""));
    assert!(page.header("strict-transport-security").is_some());
    let body = format!("username=alice&password={ALICE_PW}");
    let ok = https(format!(
        "POST /login HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        lab.addr.port(),
        body.len()
    ));
    assert_eq!(ok.status, 303, "{ok:?}");
    let cookies = ok.headers("set-cookie");
    assert!(cookies[0].contains("; Secure"), "{cookies:?}");
    // Plain HTTP to the HTTPS port: refused.
    let plain = get(lab.addr, "/login", None);
    assert_eq!(plain.status, 400);
    assert!(plain.body.contains("HTTPS"), "{plain:?}");
    assert!(!plain.body.contains("<form"));
}

#[test]
fn tls_files_that_do_not_fit_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let users_path = dir.join("users");
    write_users(&users_path);
    let (cert_a, _, _) = certificate(dir, "a");
    let (_, key_b, _) = certificate(dir, "b");
    let mut dash = DashboardConfig::plain("127.0.0.1:0".parse().unwrap(), users_path);
    dash.tls = Some(TlsFiles {
        cert: cert_a.clone(),
        key: key_b.clone(),
    });
    let e = Dashboard::start(&config(dir), &dash)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&key_b.display().to_string()), "{e}");
    assert!(e.contains("does not belong"), "{e}");
    dash.tls = Some(TlsFiles {
        cert: dir.join("missing.crt"),
        key: key_b,
    });
    let e = Dashboard::start(&config(dir), &dash)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls_cert") && e.contains("missing.crt"), "{e}");
    dash.tls = Some(TlsFiles {
        cert: cert_a,
        key: dir.join("users"),
    });
    let e = Dashboard::start(&config(dir), &dash)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls_key") && e.contains("no PEM PRIVATE KEY"),
        "{e}"
    );
}

#[test]
fn the_stream_delivers_a_snapshot() {
    let lab = lab();
    let (token, _) = session(lab.addr, "bob", BOB_PW);
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /stream HTTP/1.1\r\nHost: {}\r\nCookie: hvha_session={token}\r\nAccept: text/event-stream\r\n\r\n",
        lab.addr
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.contains("event: snapshot\ndata: {") && text.ends_with("\n\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Type: text/event-stream"), "{text}");
    assert!(text.contains("event: snapshot\ndata: {"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn config_refuses_plain_http_off_loopback_and_a_lone_certificate() {
    let file = Path::new("/etc/hvha/hactl.toml");
    let value = |text: &str| match Config::parse(text, file) {
        Err(ConfigError::Value {
            key, line, allowed, ..
        }) => (key, line, allowed),
        other => panic!("expected a value error, got {other:?}"),
    };
    let (key, line, allowed) = value("hsdb = \"x\"\n[dashboard]\nlisten = \"0.0.0.0:8080\"\n");
    assert_eq!((key.as_str(), line), ("dashboard.listen", Some(3)));
    assert!(allowed.contains("loopback"), "{allowed}");
    let (key, _, _) =
        value("hsdb = \"x\"\n[dashboard]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"c.pem\"\n");
    assert_eq!(key, "dashboard.tls_key");
    let (key, _, _) =
        value("hsdb = \"x\"\n[dashboard]\nlisten = \"127.0.0.1:8443\"\ntls_key = \"k.pem\"\n");
    assert_eq!(key, "dashboard.tls_cert");
    let (key, _, _) = value("hsdb = \"x\"\n[dashboard]\nlisten = \"localhost:80\"\n");
    assert_eq!(key, "dashboard.listen");
    let (key, _, allowed) =
        value("hsdb = \"x\"\n[dashboard]\nlisten = \"127.0.0.1:80\"\nsession_idle_s = 5\n");
    assert_eq!(key, "dashboard.session_idle_s");
    assert!(allowed.contains("60..="), "{allowed}");

    // Accepted: loopback plain, any address with TLS; relative paths from the file's
    // directory; the printed configuration reads back the same.
    let c = Config::parse(
        "hsdb = \"x\"\n[dashboard]\nlisten = \"[::]:8443\"\ntls_cert = \"d.crt\"\ntls_key = \"d.key\"\nmax_connections = 16\n",
        file,
    )
    .unwrap();
    let d = c.dashboard.as_ref().unwrap();
    assert_eq!(d.users_file, Path::new("/etc/hvha/dashboard-users"));
    assert_eq!(d.tls.as_ref().unwrap().cert, Path::new("/etc/hvha/d.crt"));
    assert_eq!(d.max_connections, 16);
    assert_eq!(d.session_idle, Duration::from_secs(1800));
    assert_eq!(Config::parse(&c.to_string(), file).unwrap(), c);
    let none = Config::parse("hsdb = \"x\"\n", file).unwrap();
    assert_eq!(none.dashboard, None);
    assert_eq!(Config::parse(&none.to_string(), file).unwrap(), none);
}

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

fn hactl(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = std::process::Command::new(HACTL)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn hactl_manages_users_and_run_serves_the_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hsdb::Hsdb::open(dir.join("hsdb.sqlite"), &hsdb::Options::default()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("hactl.toml");
    std::fs::write(
        &config,
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\n[dashboard]\nlisten = \
             \"127.0.0.1:{port}\"\nusers_file = \"users\"\n"
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    // Users: the password from a file or from stdin, never the command line.
    std::fs::write(dir.join("pw"), "alice-password\n").unwrap();
    let pw = dir.join("pw");
    let o = hactl(
        &[
            "--config",
            c,
            "dashboard",
            "user",
            "add",
            "alice",
            "--role",
            "operator",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = hactl(
        &[
            "--config",
            c,
            "dashboard",
            "user",
            "add",
            "bob",
            "--role",
            "read-only",
        ],
        Some("bob-password\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = hactl(
        &[
            "--config",
            c,
            "dashboard",
            "user",
            "add",
            "carol",
            "--role",
            "read-only",
        ],
        Some("short\n"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = hactl(&["--config", c, "dashboard", "user", "list"], None);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listed.contains("alice") && listed.contains("operator"),
        "{}",
        text(&o)
    );
    assert!(
        listed.contains("bob") && !listed.contains("carol"),
        "{listed}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("users"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let o = hactl(&["--config", c, "check-config"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("[dashboard]"));

    // A broken users file: `hactl run` does not start, exit 2 (configuration), the
    // file and line named.
    let good = std::fs::read(dir.join("users")).unwrap();
    std::fs::write(dir.join("users"), b"alice:root:x\n").unwrap();
    let o = hactl(&["--config", c, "run"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("users file") && text(&o).contains("line 1"),
        "{}",
        text(&o)
    );
    let o = hactl(&["--config", c, "check-config"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::write(dir.join("users"), good).unwrap();

    // The port taken: `hactl run` stops with the address in the error.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let o = hactl(&["--config", c, "run"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(&format!("dashboard listen 127.0.0.1:{port}: cannot bind")),
        "{}",
        text(&o)
    );
    drop(taken);

    let mut child = std::process::Command::new(HACTL)
        .args(["--config", c, "run"])
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let up = loop {
        if TcpStream::connect(addr).is_ok() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("no dashboard: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r = login(addr, "bob", "bob-password");
    assert_eq!(r.status, 303, "{r:?}");
    let home = get(addr, "/", r.session().as_deref());
    assert!(home.body.contains("data-role=\"read-only\""), "{home:?}");
    assert_eq!(login(addr, "alice", "wrong").status, 401);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("hactl run did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(code.code(), Some(0), "{log}");
    assert!(log.contains("dashboard serving"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("login ok") && l.contains("bob") && l.contains("127.0.0.1")),
        "{log}"
    );
    assert!(log.contains("login failed"), "{log}");
    assert!(log.contains("dashboard stopped"), "{log}");
    assert!(TcpStream::connect(addr).is_err(), "the port is closed");
}

#[test]
fn repeated_failures_are_throttled_then_let_through() {
    let lab = lab();
    for _ in 0..5 {
        assert_eq!(login(lab.addr, "bob", "not-bobs-password").status, 401);
    }
    // Even the right password waits now, and the page says for how long.
    let r = login(lab.addr, "bob", BOB_PW);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("try again in"), "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // Another user from the same address is not held back.
    assert_eq!(login(lab.addr, "alice", ALICE_PW).status, 303);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(login(lab.addr, "bob", BOB_PW).status, 303);
}

#[test]
fn idle_sessions_end_and_the_connection_cap_holds() {
    let lab = lab_with(
        Limits {
            request_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
        },
        |d, _| {
            d.session_idle = Duration::from_millis(700);
            d.max_connections = 2;
        },
    );
    let (token, _) = session(lab.addr, "alice", ALICE_PW);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(get(lab.addr, "/", Some(&token)).status, 200, "used: kept");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        get(lab.addr, "/", Some(&token)).status,
        200,
        "used again: kept"
    );
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(get(lab.addr, "/", Some(&token)).status, 303, "idle: ended");

    // Two connections that send nothing hold both slots: a third is refused at once.
    let a = TcpStream::connect(lab.addr).unwrap();
    let b = TcpStream::connect(lab.addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let refused = get(lab.addr, "/login", None);
    assert_eq!(refused.status, 503, "{refused:?}");
    drop((a, b));
    let started = Instant::now();
    while get(lab.addr, "/login", None).status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slots not freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
