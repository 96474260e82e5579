//! A small Chrome DevTools Protocol driver for Debian's headless Chromium
//! (`/usr/bin/chromium`), for the dashboard's tests in a real browser
//! (`tests/dashboard_browser.rs`).
//!
//! [`Browser::launch`] starts `chromium --headless=new --no-sandbox --disable-gpu
//! --remote-debugging-port=0 --user-data-dir=<a fresh directory>` in its own process
//! group — inside a network namespace when asked, so it reaches a server listening on
//! that namespace's loopback —, reads the `DevTools listening on ws://…` line from its
//! standard error, and speaks the protocol over a minimal WebSocket client of its own
//! (RFC 6455: the upgrade, masked client frames, fragmented and 64-bit-length server
//! frames; nothing else is needed to talk to a local Chromium). It opens one page
//! (a target attached with `flatten`), sized 1280×800.
//!
//! Every command has a timeout. While it waits for answers, the driver collects what a
//! person would see as the page going wrong ([`Problem`]): console errors
//! (`Runtime.consoleAPICalled` of type `error` or `assert`), uncaught exceptions
//! (`Runtime.exceptionThrown`), `Log.entryAdded` errors (such as a blocked or failed
//! resource, or a Content-Security-Policy violation), and failed requests
//! (`Network.loadingFailed` unless the browser itself cancelled the request — a page
//! left with a stream open —, and responses with a status of 400 or more).
//!
//! Dropping the [`Browser`] kills its whole process group and removes its profile
//! directory.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Debian's Chromium launcher.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The page's size for every screenshot.
pub const VIEWPORT: (u32, u32) = (1280, 800);

/// The longest WebSocket message accepted from the browser (a full-page screenshot in
/// base64 is a few MiB).
const MAX_MESSAGE: usize = 64 << 20;

/// Why a browser command failed.
#[derive(Debug)]
pub enum Error {
    /// Chromium did not start or did not say where its DevTools endpoint is.
    Launch(String),
    /// The connection to the browser failed.
    Io(std::io::Error),
    /// The browser sent something this driver does not understand, or answered a
    /// command with an error.
    Protocol(String),
    /// Nothing (or not the awaited thing) within the time given.
    Timeout(String),
    /// The page's script threw while being evaluated.
    Script(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Launch(why) => write!(f, "chromium did not start: {why}"),
            Error::Io(e) => write!(f, "connection to chromium: {e}"),
            Error::Protocol(why) => write!(f, "DevTools protocol: {why}"),
            Error::Timeout(what) => write!(f, "timed out: {what}"),
            Error::Script(why) => write!(f, "script threw: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// A result of the driver.
pub type Result<T> = std::result::Result<T, Error>;

/// Whether a test that needs Chromium can run: `None` when [`CHROMIUM`] is installed;
/// else prints `SKIPPED <test>: …` and returns why — and under `CI=true` panics, since
/// CI installs it (`.ci/run`).
pub fn chromium_missing(test: &str) -> Option<String> {
    if Path::new(CHROMIUM).exists() {
        return None;
    }
    let why = format!("{CHROMIUM} not installed (apt-get install chromium)");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}; CI installs it (.ci/run)"
    );
    eprintln!("SKIPPED {test}: {why}");
    Some(why)
}

/// Something that went wrong on a page, as collected while the driver ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `console`, `exception`, `log` or `request`.
    pub kind: &'static str,
    /// What the browser said.
    pub text: String,
    /// The resource or script it is about, when the browser says.
    pub url: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.text)?;
        if !self.url.is_empty() {
            write!(f, " ({})", self.url)?;
        }
        Ok(())
    }
}

/// A headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocket,
    session: String,
    next_id: u64,
    /// `Page.loadEventFired` events seen so far.
    loads: u64,
    problems: Vec<Problem>,
    /// Request id → URL, for failed requests.
    requests: HashMap<String, String>,
    /// The last lines Chromium wrote on its standard error.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Browser {
    /// Start Chromium (inside network namespace `netns` when given) with a fresh
    /// profile and open one blank 1280×800 page.
    pub fn launch(netns: Option<&str>) -> Result<Browser> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("hvha-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, CHROMIUM]);
                c
            }
            None => Command::new(CHROMIUM),
        };
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-features=Translate,MediaRouter",
                "--hide-scrollbars",
                "--mute-audio",
                &format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1),
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group: the renderer and helper processes die with it on drop.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| Error::Launch(format!("{CHROMIUM}: {e}")))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = channel();
        let pipe = child
            .stderr
            .take()
            .ok_or(Error::Launch("no stderr".into()))?;
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
                if let Ok(mut lines) = lines.lock() {
                    if lines.len() == 200 {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                kill_group(&mut child);
                let _ = std::fs::remove_dir_all(&profile);
                let said: Vec<String> = stderr
                    .lock()
                    .map(|l| l.iter().cloned().collect())
                    .unwrap_or_default();
                return Err(Error::Launch(format!(
                    "no `DevTools listening on` line within 30 s; it said:\n{}",
                    said.join("\n")
                )));
            }
        };
        let ws = match WebSocket::connect(&url, netns) {
            Ok(ws) => ws,
            Err(e) => {
                kill_group(&mut child);
                let _ = std::fs::remove_dir_all(&profile);
                return Err(e);
            }
        };
        let mut browser = Browser {
            child,
            profile,
            ws,
            session: String::new(),
            next_id: 0,
            loads: 0,
            problems: Vec::new(),
            requests: HashMap::new(),
            stderr,
        };
        let t = Duration::from_secs(10);
        let target =
            browser.browser_call("Target.createTarget", json!({"url": "about:blank"}), t)?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("no targetId in {target}")))?
            .to_owned();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            t,
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("no sessionId in {attached}")))?
            .to_owned();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            browser.call(domain, json!({}), t)?;
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1, "mobile": false}),
            t,
        )?;
        Ok(browser)
    }

    /// The last lines Chromium wrote on its standard error (for a failure message).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Send `method` to the page's session and wait up to `within` for its result.
    pub fn call(&mut self, method: &str, params: Value, within: Duration) -> Result<Value> {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params, within)
    }

    /// Send `method` to the browser itself (no session).
    fn browser_call(&mut self, method: &str, params: Value, within: Duration) -> Result<Value> {
        self.call_on(None, method, params, within)
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<u64> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::from(session);
        }
        self.ws.send_text(&message.to_string())?;
        Ok(id)
    }

    fn call_on(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        within: Duration,
    ) -> Result<Value> {
        let id = self.send(session, method, params)?;
        let deadline = Instant::now() + within;
        loop {
            let Some(message) = self.ws.recv_text(deadline)? else {
                return Err(Error::Timeout(format!(
                    "{method}: no answer within {within:?}"
                )));
            };
            let message: Value = serde_json::from_str(&message)
                .map_err(|e| Error::Protocol(format!("not JSON ({e}): {message:.200}")))?;
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    return Err(Error::Protocol(format!("{method}: {error}")));
                }
                return Ok(message["result"].clone());
            }
            self.event(&message)?;
        }
    }

    /// Read events until `deadline` (or the first read that times out).
    fn pump(&mut self, deadline: Instant) -> Result<()> {
        while let Some(message) = self.ws.recv_text(deadline)? {
            let message: Value = serde_json::from_str(&message)
                .map_err(|e| Error::Protocol(format!("not JSON ({e}): {message:.200}")))?;
            self.event(&message)?;
        }
        Ok(())
    }

    /// Take note of one event.
    fn event(&mut self, message: &Value) -> Result<()> {
        let Some(method) = message["method"].as_str() else {
            return Ok(()); // an answer to a command nobody waits for
        };
        let p = &message["params"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match method {
            "Page.loadEventFired" => self.loads += 1,
            "Runtime.consoleAPICalled" => {
                let kind = p["type"].as_str().unwrap_or_default();
                if kind == "error" || kind == "assert" {
                    let words: Vec<String> = p["args"]
                        .as_array()
                        .map(|args| {
                            args.iter()
                                .map(|a| match &a["value"] {
                                    Value::String(s) => s.clone(),
                                    Value::Null => text(&a["description"]),
                                    v => v.to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let url = p["stackTrace"]["callFrames"][0]["url"].as_str();
                    self.problems.push(Problem {
                        kind: "console",
                        text: words.join(" "),
                        url: url.unwrap_or_default().to_owned(),
                    });
                }
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let description = d["exception"]["description"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| text(&d["text"]));
                self.problems.push(Problem {
                    kind: "exception",
                    text: description,
                    url: text(&d["url"]),
                });
            }
            "Log.entryAdded" => {
                let e = &p["entry"];
                if e["level"].as_str() == Some("error") {
                    self.problems.push(Problem {
                        kind: "log",
                        text: text(&e["text"]),
                        url: text(&e["url"]),
                    });
                }
            }
            "Network.requestWillBeSent" => {
                if self.requests.len() > 10_000 {
                    self.requests.clear();
                }
                self.requests
                    .insert(text(&p["requestId"]), text(&p["request"]["url"]));
            }
            "Network.responseReceived" => {
                let status = p["response"]["status"].as_u64().unwrap_or(0);
                if status >= 400 {
                    self.problems.push(Problem {
                        kind: "request",
                        text: format!("HTTP {status} {}", text(&p["response"]["statusText"])),
                        url: text(&p["response"]["url"]),
                    });
                }
            }
            // Cancelled by the browser itself: a page left while a request (such as the
            // live stream) was open. Not the page's fault.
            "Network.loadingFailed" if p["canceled"].as_bool() != Some(true) => {
                let url = self
                    .requests
                    .get(p["requestId"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                self.problems.push(Problem {
                    kind: "request",
                    text: format!("{} {}", text(&p["errorText"]), text(&p["blockedReason"]))
                        .trim()
                        .to_owned(),
                    url,
                });
            }
            "Page.javascriptDialogOpening" => {
                // A confirm() before an action: a person would accept it.
                let session = self.session.clone();
                self.send(
                    Some(&session),
                    "Page.handleJavaScriptDialog",
                    json!({"accept": true}),
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Everything collected so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Everything collected so far, forgetting it (after a deliberate failure the test
    /// checks by itself).
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// Read the events that arrived (for `settle`: a page's late errors).
    pub fn settle(&mut self, for_: Duration) -> Result<()> {
        self.pump(Instant::now() + for_)
    }

    /// Wait up to `within` until the page has fired `load` more than `loads` times.
    fn wait_load(&mut self, loads: u64, within: Duration, what: &str) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.loads <= loads {
            let Some(message) = self.ws.recv_text(deadline)? else {
                return Err(Error::Timeout(format!(
                    "{what}: no load event within {within:?}"
                )));
            };
            let message: Value = serde_json::from_str(&message)
                .map_err(|e| Error::Protocol(format!("not JSON ({e}): {message:.200}")))?;
            self.event(&message)?;
        }
        Ok(())
    }

    /// Go to `url` and wait (up to `within`) for its `load` event.
    pub fn navigate(&mut self, url: &str, within: Duration) -> Result<()> {
        let loads = self.loads;
        let result = self.call("Page.navigate", json!({"url": url}), within)?;
        if let Some(error) = result["errorText"].as_str() {
            return Err(Error::Protocol(format!("navigate to {url}: {error}")));
        }
        self.wait_load(loads, within, url)
    }

    /// Reload the page and wait for it.
    pub fn reload(&mut self, within: Duration) -> Result<()> {
        let loads = self.loads;
        self.call("Page.reload", json!({}), within)?;
        self.wait_load(loads, within, "reload")
    }

    /// Evaluate the expression `js` in the page (awaiting it when it is a promise) and
    /// return its value as JSON.
    pub fn eval(&mut self, js: &str) -> Result<Value> {
        self.eval_within(js, Duration::from_secs(10))
    }

    /// [`Browser::eval`] with a timeout of `within`.
    pub fn eval_within(&mut self, js: &str, within: Duration) -> Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            within,
        )?;
        if let Some(details) = result.get("exceptionDetails") {
            let why = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("an exception");
            return Err(Error::Script(format!("{why} in `{js:.200}`")));
        }
        Ok(result["result"]["value"].clone())
    }

    /// [`Browser::eval`] of an expression meant to give a string (`""` otherwise).
    pub fn eval_string(&mut self, js: &str) -> Result<String> {
        Ok(match self.eval(js)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            v => v.to_string(),
        })
    }

    /// Poll the expression `js` (every 100 ms, collecting events in between) until it is
    /// truthy; how long that took. An evaluation that throws (the page is between two
    /// documents) counts as false.
    pub fn wait_until(&mut self, js: &str, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + within;
        let probe = format!("!!({js})");
        loop {
            if let Ok(Value::Bool(true)) = self.eval_within(&probe, within) {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("`{js}` within {within:?}")));
            }
            self.pump(Instant::now() + Duration::from_millis(100))?;
        }
    }

    /// Fill the fields of the form `form` (a CSS selector) by name, submit it by
    /// clicking its submit button as a person would (`requestSubmit()` when it has
    /// none), and wait for the next page's `load`.
    pub fn submit_form(
        &mut self,
        form: &str,
        fields: &[(&str, &str)],
        within: Duration,
    ) -> Result<()> {
        let loads = self.loads;
        let js = format!(
            "(() => {{ const f = document.querySelector({sel}); if (!f) return 'no form ' + {sel};
               for (const [n, v] of {fields}) {{ const e = f.elements.namedItem(n);
                 if (!e) return 'no field ' + n; e.value = v; }}
               const b = f.querySelector('button[type=submit], input[type=submit], button:not([type])');
               if (b) b.click(); else f.requestSubmit(); return 'ok'; }})()",
            sel = Value::from(form),
            fields = json!(fields),
        );
        let said = self.eval_string(&js)?;
        if said != "ok" {
            return Err(Error::Script(format!("submit {form}: {said}")));
        }
        self.wait_load(loads, within, &format!("submit {form}"))
    }

    /// Click the element `selector` and wait for the page it leads to.
    pub fn click_and_wait(&mut self, selector: &str, within: Duration) -> Result<()> {
        let loads = self.loads;
        let js = format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return 'nothing matches ' + {sel};
               e.click(); return 'ok'; }})()",
            sel = Value::from(selector)
        );
        let said = self.eval_string(&js)?;
        if said != "ok" {
            return Err(Error::Script(format!("click {selector}: {said}")));
        }
        self.wait_load(loads, within, &format!("click {selector}"))
    }

    /// A PNG of the page's viewport (1280×800).
    pub fn screenshot(&mut self) -> Result<Vec<u8>> {
        let result = self.call(
            "Page.captureScreenshot",
            json!({"format": "png"}),
            Duration::from_secs(30),
        )?;
        let data = result["data"]
            .as_str()
            .ok_or_else(|| Error::Protocol("a screenshot without data".into()))?;
        base64_decode(data).ok_or_else(|| Error::Protocol("a screenshot not in base64".into()))
    }

    /// Write a screenshot of the page to `path`; its size in bytes.
    pub fn screenshot_to(&mut self, path: &Path) -> Result<usize> {
        let png = self.screenshot()?;
        std::fs::write(path, &png)?;
        Ok(png.len())
    }

    /// The page's current URL.
    pub fn url(&mut self) -> Result<String> {
        self.eval_string("location.href")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Kill the process group led by `child` (Chromium and its helpers) and reap it.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The width and height a PNG says it has (its IHDR chunk), if `png` is one.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

/// Standard base64 (with or without padding) to bytes; `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits).to_be_bytes()[3]);
        }
    }
    Some(out)
}

/// A WebSocket client connection (RFC 6455), enough to talk to a local Chromium: text
/// messages out (masked, as a client must), text messages in (fragments joined), pings
/// answered.
struct WebSocket {
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    mask_seed: u32,
}

impl WebSocket {
    /// Connect to `ws://host:port/path` (from inside network namespace `netns` when
    /// given: the socket stays in the namespace it was made in).
    fn connect(url: &str, netns: Option<&str>) -> Result<WebSocket> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| Error::Launch(format!("not a ws:// URL: {url}")))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = host.to_owned();
        let stream = match netns {
            Some(ns) => {
                let addr = host.clone();
                crate::in_netns(ns, move || TcpStream::connect(addr))?
            }
            None => TcpStream::connect(&host)?,
        };
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut ws = WebSocket {
            stream,
            buf: Vec::new(),
            mask_seed: std::process::id().wrapping_mul(2_654_435_761),
        };
        let path = if path.is_empty() { "/" } else { path };
        write!(
            ws.stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: aHZoYS1icm93c2VyLXRlc3Q=\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let end = loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if ws.buf.len() > 16 << 10 || !ws.fill(deadline)? {
                return Err(Error::Launch(format!("no WebSocket upgrade from {url}")));
            }
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(Error::Launch(format!("{url} refused the upgrade: {head}")));
        }
        ws.buf.drain(..end + 4);
        Ok(ws)
    }

    /// Read more bytes into the buffer; `false` when `deadline` passed first.
    fn fill(&mut self, deadline: Instant) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Error::Protocol("the browser closed the connection".into())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        let n = payload.len();
        if let Ok(short) = u8::try_from(n)
            && short < 126
        {
            frame.push(0x80 | short);
        } else if let Ok(medium) = u16::try_from(n) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&medium.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
        // xorshift: a client must mask; the key need not be secret from a local browser.
        self.mask_seed ^= self.mask_seed << 13;
        self.mask_seed ^= self.mask_seed >> 17;
        self.mask_seed ^= self.mask_seed << 5;
        let mask = self.mask_seed.to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)?;
        Ok(())
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(0x1, text.as_bytes())
    }

    /// One whole frame from the buffer, if it holds one: (fin, opcode, payload).
    fn parse_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
        let (len, mut at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                let n = usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX);
                (n, 10)
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        if len > MAX_MESSAGE {
            return Err(Error::Protocol(format!("a frame of {len} bytes")));
        }
        let mask = if masked {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        if b.len() < at + len {
            return Ok(None);
        }
        let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
        if let Some(m) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= m[i % 4];
            }
        }
        self.buf.drain(..at + len);
        Ok(Some((fin, opcode, payload)))
    }

    /// The next text message, or `None` when `deadline` passes first.
    fn recv_text(&mut self, deadline: Instant) -> Result<Option<String>> {
        let mut message: Vec<u8> = Vec::new();
        loop {
            let Some((fin, opcode, payload)) = self.parse_frame()? else {
                if self.fill(deadline)? {
                    continue;
                }
                if message.is_empty() {
                    return Ok(None);
                }
                // A message half read: give its rest a moment more.
                if !self.fill(Instant::now() + Duration::from_secs(5))? {
                    return Err(Error::Timeout("the rest of a fragmented message".into()));
                }
                continue;
            };
            match opcode {
                0x0..=0x2 => {
                    if message.len() + payload.len() > MAX_MESSAGE {
                        return Err(Error::Protocol("a message over 64 MiB".into()));
                    }
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message)
                            .map(Some)
                            .map_err(|_| Error::Protocol("a message not in UTF-8".into()));
                    }
                }
                0x8 => return Err(Error::Protocol("the browser closed the WebSocket".into())),
                0x9 => self.send_frame(0xA, &payload)?,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The driver against a tiny HTTP server of its own: each check can fail.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::TcpListener;

    /// Serve the test pages on 127.0.0.1; the server's address. Every POST body is sent
    /// on `posts`.
    fn serve() -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p;
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + 4 + length {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end + 4..]).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let page = |body: &str| {
                        format!(
                            "<!doctype html><html><head><title>t</title><link rel=\"icon\" href=\"data:,\"></head><body>{body}</body></html>"
                        )
                    };
                    let (status, html) = match path.as_str() {
                        "/" => ("200 OK", page("<h1>clean</h1>")),
                        "/console" => (
                            "200 OK",
                            page("<script>console.error('deliberate console error', 42)</script>"),
                        ),
                        "/throw" => ("200 OK", page("<script>null.deliberate()</script>")),
                        "/missing" => ("200 OK", page("<img src=\"/no-such-image.png\">")),
                        "/late" => (
                            "200 OK",
                            page(
                                "<script>setTimeout(() => { document.body.dataset.late = 'yes' }, 700)</script>",
                            ),
                        ),
                        "/form" => (
                            "200 OK",
                            page(
                                "<form id=\"f\" method=\"post\" action=\"/posted\"><input name=\"username\">\
                                  <input name=\"password\" type=\"password\"><button type=\"submit\">Go</button></form>",
                            ),
                        ),
                        "/posted" => {
                            let _ = tx.send(body.clone());
                            ("200 OK", page(&format!("<p id=\"got\">{body}</p>")))
                        }
                        _ => ("404 Not Found", page("no")),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    );
                });
            }
        });
        (addr, rx)
    }

    #[test]
    fn base64_and_png_size() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
        assert_eq!(png_size(b"not a png at all, no, not at all"), None);
    }

    #[test]
    fn driver_collects_problems_fills_forms_and_takes_screenshots() {
        if chromium_missing("browser::tests::driver").is_some() {
            return;
        }
        let (addr, posts) = serve();
        let t = Duration::from_secs(20);
        let mut b = Browser::launch(None).unwrap_or_else(|e| panic!("{e}"));

        // A clean page: nothing collected.
        b.navigate(&format!("http://{addr}/"), t).unwrap();
        b.settle(Duration::from_millis(300)).unwrap();
        assert_eq!(
            b.problems(),
            &[] as &[Problem],
            "a clean page has no problems"
        );
        assert_eq!(
            b.eval_string("document.querySelector('h1').textContent")
                .unwrap(),
            "clean"
        );

        // A deliberate console error is caught, with its words.
        b.navigate(&format!("http://{addr}/console"), t).unwrap();
        b.settle(Duration::from_millis(300)).unwrap();
        let p = b.take_problems();
        assert!(
            p.iter()
                .any(|p| p.kind == "console" && p.text == "deliberate console error 42"),
            "console error collected: {p:?}"
        );

        // An uncaught exception.
        b.navigate(&format!("http://{addr}/throw"), t).unwrap();
        b.settle(Duration::from_millis(300)).unwrap();
        let p = b.take_problems();
        assert!(
            p.iter()
                .any(|p| p.kind == "exception" && p.text.contains("TypeError")),
            "exception collected: {p:?}"
        );

        // A resource that is not there: a failed request.
        b.navigate(&format!("http://{addr}/missing"), t).unwrap();
        b.settle(Duration::from_millis(300)).unwrap();
        let p = b.take_problems();
        assert!(
            p.iter().any(|p| p.kind == "request"
                && p.text.starts_with("HTTP 404")
                && p.url.ends_with("/no-such-image.png")),
            "failed request collected: {p:?}"
        );

        // Waiting for a condition that becomes true later, and one that never does.
        b.navigate(&format!("http://{addr}/late"), t).unwrap();
        let took = b
            .wait_until(
                "document.body.dataset.late === 'yes'",
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(took >= Duration::from_millis(400), "waited {took:?}");
        assert!(matches!(
            b.wait_until(
                "document.body.dataset.never === 'yes'",
                Duration::from_millis(500)
            ),
            Err(Error::Timeout(_))
        ));
        assert!(matches!(b.eval("null.x"), Err(Error::Script(_))));
        // The evaluation that threw on purpose is not a page problem.
        assert_eq!(b.take_problems(), vec![]);

        // A form filled and submitted: the server got the fields.
        b.navigate(&format!("http://{addr}/form"), t).unwrap();
        b.submit_form("#f", &[("username", "ops"), ("password", "s3cret&x")], t)
            .unwrap();
        let posted = posts.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(posted, "username=ops&password=s3cret%26x");
        assert!(b.url().unwrap().ends_with("/posted"));
        assert!(matches!(
            b.submit_form("#nope", &[], Duration::from_secs(1)),
            Err(Error::Script(_))
        ));

        // A screenshot of the 1280×800 viewport.
        let png = b.screenshot().unwrap();
        assert_eq!(png_size(&png), Some(VIEWPORT), "screenshot size");
        assert_eq!(b.take_problems(), vec![], "no problems on the last pages");
    }
}
