//! pglab against real PostgreSQL: the shared server's fresh databases, a test's own
//! server stopped like a crash and cleanly, and the cleanup of clusters whose process
//! was killed. Without PostgreSQL on this machine the tests print `SKIPPED` and pass
//! (under `CI=true` they fail).
//!
//! Some tests run this test binary again as a child process (`child_*`, ignored in a
//! normal run) to watch what happens when a process with clusters is killed, or sees
//! another `HVHA_PG_URL`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set in the child processes, which the `child_*` tests check so that a plain
/// `cargo test -- --ignored` does nothing with them.
const CHILD_ENV: &str = "PGLAB_TEST_CHILD";

/// Wait for `ready`, up to a minute (a loaded machine).
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn tables(url: &str) -> Vec<String> {
    pglab::client(url)
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn fresh_databases_are_new_empty_and_apart() {
    let Some(server) = pglab::require("pglab::fresh_databases_are_new_empty_and_apart") else {
        return;
    };
    let a = server.fresh_database("apart A");
    let b = server.fresh_database("apart A");
    assert_ne!(a, b);
    assert_eq!(tables(&a), Vec::<String>::new());
    let mut client = pglab::client(&a);
    client
        .batch_execute("CREATE TABLE vm (uuid TEXT PRIMARY KEY); INSERT INTO vm VALUES ('x')")
        .unwrap();
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    assert!(
        a.ends_with(&format!("/{name}")),
        "{a} is not database {name}"
    );
    assert!(
        name.starts_with(&format!("hvt_{}_", std::process::id())),
        "{name}"
    );
    let encoding: String = client
        .query_one(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert_eq!(encoding, "UTF8");
    assert_eq!(tables(&a), ["vm"]);
    assert_eq!(tables(&b), Vec::<String>::new(), "b sees nothing of a");
}

#[test]
fn an_owned_server_keeps_commits_across_a_crash_and_a_restart() {
    let Some(server) =
        pglab::require_owned("pglab::an_owned_server_keeps_commits_across_a_crash_and_a_restart")
    else {
        return;
    };
    let (url, port) = (server.fresh_database("outage"), server.port());
    let mut client = pglab::client(&url);
    client
        .batch_execute("CREATE TABLE t (n BIGINT); INSERT INTO t VALUES (1)")
        .unwrap();

    server.stop_immediate();
    assert!(!server.is_running());
    assert!(!accepts(port));
    assert!(
        client.execute("INSERT INTO t VALUES (2)", &[]).is_err(),
        "a crashed server answered"
    );

    server.start_again();
    assert!(server.is_running());
    assert_eq!(server.port(), port, "same port for the server's life");
    let mut client = pglab::client(&url);
    client.execute("INSERT INTO t VALUES (2)", &[]).unwrap();

    server.restart();
    let mut client = pglab::client(&url);
    let rows: Vec<i64> = client
        .query("SELECT n FROM t ORDER BY n", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 2], "every acknowledged commit survives");

    server.stop_fast();
    assert!(!accepts(port));
    server.start_again();
    assert_eq!(tables(&url), ["t"]);
}

#[test]
fn a_dropped_owned_server_is_stopped_and_deleted() {
    let Some(server) = pglab::require_owned("pglab::a_dropped_owned_server_is_stopped_and_deleted")
    else {
        return;
    };
    let (dir, port) = (server.dir().to_owned(), server.port());
    assert!(dir.join("data/PG_VERSION").is_file());
    assert!(accepts(port));
    drop(server);
    // Drop waits for the reaper: gone at once.
    assert!(!dir.exists(), "{} still there", dir.display());
    assert!(!accepts(port), "port {port} still answers");
}

/// Run child test `test` of this binary with `envs` (and without `HVHA_PG_URL` unless
/// given), its stdout piped.
fn child(test: &str, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove(pglab::URL_ENV)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Child: start the shared server and an owned one, say where they are, then wait to be
/// killed.
#[test]
#[ignore = "run by reaper_removes_the_clusters_of_a_killed_process"]
fn child_clusters_then_wait() {
    if !is_child() {
        return;
    }
    let shared = pglab::server().unwrap();
    assert!(shared.is_own_cluster());
    let url = shared.fresh_database("child");
    let owned = pglab::OwnedServer::start().unwrap();
    println!(
        "\nCLUSTERS {} {} {} {}",
        shared.cluster_dir().unwrap().display(),
        port_of(&url),
        owned.dir().display(),
        owned.port()
    );
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn port_of(url: &str) -> u16 {
    let authority = url.split('/').nth(2).unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn reaper_removes_the_clusters_of_a_killed_process() {
    if pglab::require("pglab::reaper_removes_the_clusters_of_a_killed_process").is_none() {
        return;
    }
    let mut process = child("child_clusters_then_wait", &[]).spawn().unwrap();
    let stdout = BufReader::new(process.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("CLUSTERS "))
        .unwrap_or_else(|| {
            let status = process.wait().unwrap();
            panic!("the child ended ({status}) without starting its clusters")
        });
    let fields: Vec<&str> = line.split_whitespace().collect();
    let clusters = [
        (
            Path::new(fields[1]).to_owned(),
            fields[2].parse::<u16>().unwrap(),
        ),
        (
            Path::new(fields[3]).to_owned(),
            fields[4].parse::<u16>().unwrap(),
        ),
    ];
    for (dir, port) in &clusters {
        assert!(dir.join("data").is_dir(), "{}", dir.display());
        assert!(accepts(*port), "port {port}");
    }

    // SIGKILL: no destructor, no atexit — only the reaper can clean up.
    process.kill().unwrap();
    process.wait().unwrap();
    for (dir, port) in &clusters {
        eventually(&format!("{} deleted", dir.display()), || !dir.exists());
        eventually(&format!("port {port} closed"), || !accepts(*port));
    }
}

/// Child: print what `pglab::server()` says about the `HVHA_PG_URL` it was given.
#[test]
#[ignore = "run by hvha_pg_url_is_used_checked_and_refused_with_reasons"]
fn child_server_from_env() {
    if !is_child() {
        return;
    }
    match pglab::server() {
        Ok(server) => {
            assert!(!server.is_own_cluster());
            let url = server.fresh_database("env");
            assert_eq!(tables(&url), Vec::<String>::new());
            println!("\nOK {url}");
        }
        Err(missing) => println!("\nMISSING broken={} {}", missing.broken, missing.why),
    }
}

fn server_from_env(url: &str) -> String {
    let Output { stdout, status, .. } = child("child_server_from_env", &[(pglab::URL_ENV, url)])
        .output()
        .unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&stdout));
    String::from_utf8_lossy(&stdout)
        .lines()
        .find(|l| l.starts_with("OK ") || l.starts_with("MISSING "))
        .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&stdout)))
        .to_owned()
}

#[test]
fn hvha_pg_url_is_used_checked_and_refused_with_reasons() {
    let Some(server) =
        pglab::require_owned("pglab::hvha_pg_url_is_used_checked_and_refused_with_reasons")
    else {
        return;
    };
    let prefix = format!("OK postgres://hvha@127.0.0.1:{}/hvt_", server.port());
    let first = server_from_env(&server.url());
    assert!(first.starts_with(&prefix), "{first}");
    // The next process on the same server sweeps the databases of the first, which no
    // longer runs.
    let second = server_from_env(&server.url());
    assert!(second.starts_with(&prefix), "{second}");
    let databases: Vec<String> = pglab::client(&server.url())
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'hvt\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let name = |said: &str| said.rsplit('/').next().unwrap().to_owned();
    assert_eq!(databases, [name(&second)], "{first} swept, {second} kept");

    // A server that does not answer: a failure, not a skip.
    let port = server.port();
    server.stop_fast();
    let said = server_from_env(&format!("postgres://hvha@127.0.0.1:{port}/postgres"));
    assert!(
        said.starts_with("MISSING broken=true HVHA_PG_URL="),
        "{said}"
    );
    assert!(said.contains("cannot connect"), "{said}");

    let said = server_from_env("postgres://hvha:secret@127.0.0.1:1/postgres");
    assert!(said.starts_with("MISSING broken=true"), "{said}");
    assert!(
        said.contains("password") && !said.contains("secret"),
        "{said}"
    );

    let said = server_from_env("mysql://hvha@127.0.0.1/postgres");
    assert!(said.contains("not a postgres:// URL"), "{said}");
}
