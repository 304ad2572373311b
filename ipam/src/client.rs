//! The plugins' side of the protocol: a blocking unix socket client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::{ErrorKind, Request, Response};

/// Long enough for a burst of pod starts queued behind fsyncs, short
/// enough that a wedged daemon fails the ADD instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens: the daemon is down or not started yet.
    #[error("podnetd is not reachable at {}: {source}", socket.display())]
    Unavailable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The request was sent but no answer came: the daemon may or may not
    /// have acted on it.
    #[error("podnetd at {} did not answer: {source}", socket.display())]
    Interrupted {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to podnetd at {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("podnetd answered something unreadable: {0}")]
    Protocol(#[source] serde_json::Error),
    #[error("podnetd: {message}")]
    Daemon { kind: ErrorKind, message: String },
}

/// A write that fails may still have delivered the request.
fn interrupted_early(socket: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Interrupted {
        socket: socket.to_path_buf(),
        source,
    }
}

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
            timeout: TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and does not wait for the answer (reports that
    /// must not hold a plugin up).
    pub fn notify(&self, req: &Request) -> Result<(), ClientError> {
        self.send(req).map(drop)
    }

    /// Sends one request; a daemon error reply becomes `ClientError::Daemon`.
    pub fn call(&self, req: &Request) -> Result<Response, ClientError> {
        self.send(req)?.answer()
    }

    /// Sends one request and returns at once: the caller does other work
    /// while the daemon answers, then reads the answer.
    pub fn send(&self, req: &Request) -> Result<PendingCall, ClientError> {
        let stream =
            UnixStream::connect(&self.socket).map_err(|source| ClientError::Unavailable {
                socket: self.socket.clone(),
                source,
            })?;
        let io = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line = serde_json::to_vec(req).map_err(ClientError::Protocol)?;
        line.push(b'\n');
        (&stream)
            .write_all(&line)
            .map_err(interrupted_early(&self.socket))?;
        Ok(PendingCall {
            socket: self.socket.clone(),
            stream,
        })
    }
}

/// A request sent whose answer has not been read yet.
pub struct PendingCall {
    socket: PathBuf,
    stream: UnixStream,
}

impl PendingCall {
    /// Waits for the answer (up to the client's timeout).
    pub fn answer(self) -> Result<Response, ClientError> {
        let interrupted = |source| ClientError::Interrupted {
            socket: self.socket.clone(),
            source,
        };
        let mut reply = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut reply)
            .map_err(interrupted)?;
        if reply.is_empty() {
            // The daemon closed without answering: it died mid-request.
            return Err(interrupted(std::io::Error::from(
                std::io::ErrorKind::UnexpectedEof,
            )));
        }
        match serde_json::from_str(&reply).map_err(ClientError::Protocol)? {
            Response::Error { kind, message } => Err(ClientError::Daemon { kind, message }),
            other => Ok(other),
        }
    }
}
