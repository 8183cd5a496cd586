//! One TCP connection on the signaling port: an HTTP request head, then either
//! a plain response or a WebSocket carrying the seed's JSON messages.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::http::{self, HttpError, Request};

/// What a connection wants from the loop after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The upgrade finished: tell the engine about `/ws/{session_id}`.
    Opened(String),
    /// A text frame arrived.
    Text(String),
    /// A binary frame arrived (the protocol is JSON text).
    Binary,
    /// A frame or message over the size limit arrived; the connection is closing.
    TooLarge,
}

/// Limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Largest HTTP request head.
    pub max_head: usize,
    /// Largest WebSocket message.
    pub max_message: usize,
    /// Most bytes queued for a slow reader before it is dropped.
    pub max_write_buffer: usize,
}

enum State {
    Head {
        stream: TcpStream,
        buf: Vec<u8>,
    },
    Respond {
        stream: TcpStream,
        out: Vec<u8>,
        pos: usize,
        upgrade: Option<(String, Vec<u8>)>,
    },
    Ws {
        ws: Box<WebSocket<TcpStream>>,
        closing: bool,
    },
    Done,
}

/// A connection and where it is in its life.
pub struct Conn {
    state: State,
    /// When it was accepted (the head must arrive before the head timeout).
    pub accepted: Instant,
    limits: ConnLimits,
    viewer_page: &'static str,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        stream: TcpStream,
        now: Instant,
        limits: ConnLimits,
        viewer_page: &'static str,
    ) -> Self {
        Conn {
            state: State::Head {
                stream,
                buf: Vec::with_capacity(1024),
            },
            accepted: now,
            limits,
            viewer_page,
        }
    }

    /// Whether the request head is still being read.
    pub fn reading_head(&self) -> bool {
        matches!(self.state, State::Head { .. })
    }

    /// Whether this is an open WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self.state, State::Ws { .. })
    }

    /// Whether it is finished and can be dropped.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The stream, for (de)registration.
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.state {
            State::Head { stream, .. } | State::Respond { stream, .. } => Some(stream),
            State::Ws { ws, .. } => Some(ws.get_mut()),
            State::Done => None,
        }
    }

    /// Handles readiness; returns what happened, for the engine.
    pub fn on_ready(&mut self, out: &mut Vec<ConnEvent>) {
        // Loop because one event can move the state forward several steps
        // (head complete -> response written -> WebSocket frames already buffered).
        for _ in 0..4 {
            let before = std::mem::discriminant(&self.state);
            self.step(out);
            if std::mem::discriminant(&self.state) == before {
                break;
            }
        }
    }

    fn step(&mut self, out: &mut Vec<ConnEvent>) {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match state {
            State::Head {
                mut stream,
                mut buf,
            } => {
                match read_head(
                    &mut stream,
                    &mut buf,
                    self.limits.max_head,
                    self.viewer_page,
                ) {
                    Err(()) => State::Done,
                    Ok(None) => State::Head { stream, buf },
                    Ok(Some((out, upgrade))) => State::Respond {
                        stream,
                        out,
                        pos: 0,
                        upgrade,
                    },
                }
            }
            State::Respond {
                mut stream,
                out: bytes,
                mut pos,
                upgrade,
            } => match write_some(&mut stream, &bytes, &mut pos) {
                Err(_) => State::Done,
                Ok(false) => State::Respond {
                    stream,
                    out: bytes,
                    pos,
                    upgrade,
                },
                Ok(true) => match upgrade {
                    None => {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        State::Done
                    }
                    Some((session_id, leftover)) => {
                        let config = WebSocketConfig::default()
                            .max_message_size(Some(self.limits.max_message))
                            .max_frame_size(Some(self.limits.max_message))
                            .max_write_buffer_size(self.limits.max_write_buffer);
                        let ws = WebSocket::from_partially_read(
                            stream,
                            leftover,
                            Role::Server,
                            Some(config),
                        );
                        out.push(ConnEvent::Opened(session_id));
                        State::Ws {
                            ws: Box::new(ws),
                            closing: false,
                        }
                    }
                },
            },
            State::Ws { mut ws, closing } => {
                if read_frames(&mut ws, out) {
                    State::Ws { ws, closing }
                } else {
                    State::Done
                }
            }
            State::Done => State::Done,
        };
    }

    /// Queues a text frame; a reader too slow to keep up is dropped.
    pub fn send_text(&mut self, text: String) {
        let State::Ws { ws, closing: false } = &mut self.state else {
            return;
        };
        match ws.send(Message::text(text)) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::info!("websocket send failed, closing: {e}");
                self.state = State::Done;
            }
        }
    }

    /// Starts a clean close (close frame, then wait for the peer's).
    pub fn close(&mut self) {
        if let State::Ws { ws, closing } = &mut self.state {
            if !*closing {
                *closing = true;
                let _ = ws.close(None);
                let _ = ws.flush();
            }
        } else if matches!(self.state, State::Head { .. }) {
            self.state = State::Done;
        }
    }

    /// Drops the connection at once.
    pub fn abort(&mut self) {
        self.state = State::Done;
    }

    /// Writes what is buffered (on a writable event).
    pub fn flush(&mut self) {
        if let State::Ws { ws, .. } = &mut self.state {
            match ws.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(tungstenite::Error::ConnectionClosed) => self.state = State::Done,
                Err(_) => self.state = State::Done,
            }
        }
    }
}

/// A response and, for an upgrade, the session id and bytes read past the head.
type Response = (Vec<u8>, Option<(String, Vec<u8>)>);

/// Reads what is there; Ok(Some) is the response to write, Ok(None) needs more bytes, Err closes.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_head: usize,
    viewer_page: &str,
) -> Result<Option<Response>, ()> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
        if buf.len() > max_head {
            break;
        }
    }
    let response = match http::parse_head(buf, max_head) {
        Ok(None) => return Ok(None),
        Ok(Some((Request::ViewerPage, _))) => (
            http::response("200 OK", "text/html; charset=utf-8", viewer_page.as_bytes()),
            None,
        ),
        Ok(Some((Request::Health, _))) => (http::response("200 OK", "text/plain", b"ok\n"), None),
        Ok(Some((Request::WebSocket { session_id, key }, len))) => {
            let leftover = buf.get(len..).unwrap_or_default().to_vec();
            (http::upgrade_response(&key), Some((session_id, leftover)))
        }
        Err(e) => {
            log_refusal(stream, &e);
            (e.response(), None)
        }
    };
    Ok(Some(response))
}

/// Reads every complete frame; false when the connection is over.
fn read_frames(ws: &mut WebSocket<TcpStream>, out: &mut Vec<ConnEvent>) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => out.push(ConnEvent::Text(t.as_str().to_string())),
            Ok(Message::Binary(_)) => out.push(ConnEvent::Binary),
            Ok(Message::Close(_)) => {}
            Ok(_) => {} // ping/pong: tungstenite queues the pong
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = ws.flush();
                return true;
            }
            Err(tungstenite::Error::Capacity(e)) => {
                log::info!("websocket message over the limit, closing: {e}");
                out.push(ConnEvent::TooLarge);
                return false;
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return false
            }
            Err(e) => {
                log::debug!("websocket error, closing: {e}");
                return false;
            }
        }
    }
}

fn write_some(stream: &mut TcpStream, bytes: &[u8], pos: &mut usize) -> io::Result<bool> {
    while *pos < bytes.len() {
        match stream.write(&bytes[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn log_refusal(stream: &TcpStream, e: &HttpError) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    log::info!("http {peer}: refused: {e:?}");
}
