//! `vmmd ctl`'s side of the socket: send one request, read one response.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proto::{MAX_RESPONSE, Request, Response};

/// How long `vmmd ctl` waits for the agent's answer (a change writes and fsyncs a file).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens, or no permission.
    #[error(
        "cannot reach vmmd at {}: {source} (is vmmd running? the socket is [ame] socket in its configuration; root only)",
        path.display()
    )]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The exchange broke off.
    #[error("vmmd at {}: {what}", path.display())]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
}

/// Send `request` to the agent at `socket` and read its response.
pub fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let broke = |what: String| ClientError::Exchange {
        path: socket.to_owned(),
        what,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let mut line =
        serde_json::to_string(request).map_err(|e| broke(format!("cannot encode: {e}")))?;
    line.push('\n');
    // The agent may answer before it has read everything (a refusal): read its answer
    // even when sending failed.
    let sent = stream
        .set_write_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| stream.write_all(line.as_bytes()));
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| broke(e.to_string()))?;
    let mut reader = BufReader::new((&stream).take(MAX_RESPONSE as u64 + 1));
    let mut answer = Vec::new();
    if let Err(e) = reader.read_until(b'\n', &mut answer)
        && answer.is_empty()
    {
        return Err(broke(match sent {
            Err(send) => format!("cannot send the request: {send}"),
            Ok(()) => format!("no answer: {e}"),
        }));
    }
    if answer.len() > MAX_RESPONSE {
        return Err(broke(format!("answer longer than {MAX_RESPONSE} bytes")));
    }
    if answer.is_empty() {
        return Err(broke(match sent {
            Err(e) => format!("cannot send the request: {e}"),
            Ok(()) => "closed the connection without an answer".to_owned(),
        }));
    }
    serde_json::from_slice(&answer).map_err(|e| broke(format!("unreadable answer: {e}")))
}
