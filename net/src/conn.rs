//! One TCP connection on the signaling port: an HTTP request head, then either
//! a plain response or a WebSocket carrying the seed's JSON messages; or, told
//! apart by its first byte, an ICE-TCP connection (RFC 6544) carrying STUN,
//! DTLS and SRTP in RFC 4571 frames (a 2-byte length, then the packet).

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use portcast_engine::SessionId;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::http::{self, Head, HttpError};
use crate::rfc4571::{compact, read_frames_4571};
pub use crate::rfc4571::{MAX_ICE_TCP_FRAME, MAX_ICE_TCP_QUEUE};
use crate::server::routes::{Answer, ROUTES};

/// What a connection wants from the loop after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The upgrade finished: tell the engine about `/ws/{session_id}`.
    Opened {
        /// Session id from the URL.
        session_id: SessionId,
        /// `?token=` from the URL.
        token: Option<String>,
        /// The page's `Origin` header.
        origin: Option<String>,
    },
    /// A request the loop answers (route `route` of the routes table): call [`Conn::respond`].
    Request {
        /// Index in the routes table.
        route: usize,
        /// The request head.
        head: Head,
        /// The route's `{parameter}` segment ("" for a fixed path).
        param: String,
        /// The body (read to its Content-Length for routes that take one; bounded).
        body: Vec<u8>,
    },
    /// A text frame arrived.
    Text(String),
    /// A binary frame arrived (the protocol is JSON text).
    Binary,
    /// A frame or message over the size limit arrived; the connection is closing.
    TooLarge,
    /// Messages arrive faster than allowed; the connection is closing.
    RateLimited,
    /// The connection is ICE-TCP (its first byte is no HTTP method's).
    IceTcpOpened,
    /// One RFC 4571 frame arrived on an ICE-TCP connection: a packet for the engine.
    Frame(Vec<u8>),
    /// An ICE-TCP frame length of 0 or over [`MAX_ICE_TCP_FRAME`]; the connection is closing.
    BadFrame(usize),
}

/// Limits for one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnLimits {
    /// Largest HTTP request head.
    pub max_head: usize,
    /// Largest WebSocket message.
    pub max_message: usize,
    /// Most bytes queued for a slow reader before it is dropped.
    pub max_write_buffer: usize,
    /// Steady WebSocket messages per second allowed per connection.
    pub messages_per_sec: f64,
    /// Whether a connection may be ICE-TCP (the engine announces a TCP candidate).
    pub ice_tcp: bool,
    /// Whether it must be: a connection of the ICE-TCP-only listener.
    pub ice_tcp_only: bool,
    /// Messages allowed in a burst above the steady rate.
    pub message_burst: f64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_head: 8 * 1024,
            max_message: 256 * 1024,
            max_write_buffer: 1024 * 1024,
            // The viewer page sends one client_stats a second; 10/s is ample.
            messages_per_sec: 10.0,
            message_burst: 20.0,
            ice_tcp: false,
            ice_tcp_only: false,
        }
    }
}

/// The WebSocket read buffer allocated per connection (it grows for a larger frame).
const WS_READ_BUFFER: usize = 4 * 1024;

/// What becomes of a connection once its response is written.
struct Upgrade {
    session_id: SessionId,
    token: Option<String>,
    origin: Option<String>,
    leftover: Vec<u8>,
}

enum State {
    Head {
        stream: TcpStream,
        buf: Vec<u8>,
    },
    /// A head was routed to an answer that reads the body first.
    Body {
        stream: TcpStream,
        pending: PendingBody,
    },
    Routed {
        stream: TcpStream,
    },
    Respond {
        stream: TcpStream,
        out: Vec<u8>,
        pos: usize,
        upgrade: Option<Upgrade>,
    },
    Ws {
        ws: Box<WebSocket<TcpStream>>,
        closing: bool,
    },
    /// ICE-TCP: RFC 4571 frames both ways.
    Framed {
        stream: TcpStream,
        rbuf: Vec<u8>,
        wbuf: Vec<u8>,
        wpos: usize,
    },
    Done,
}

/// Messages a connection may still send: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// A connection and where it is in its life.
pub struct Conn {
    state: State,
    /// When it was accepted (the head must arrive before the head timeout).
    pub accepted: Instant,
    /// When the WebSocket opened, if it did.
    pub ws_opened: Option<Instant>,
    /// For ICE-TCP: the peer's address, as the engine knows it.
    pub peer: Option<std::net::SocketAddr>,
    /// For ICE-TCP: whether the engine answered it (a session owns its frames).
    pub bound: bool,
    /// For ICE-TCP: when the last frame arrived.
    pub last_frame: Option<Instant>,
    limits: ConnLimits,
    bucket: TokenBucket,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(stream: TcpStream, now: Instant, limits: ConnLimits) -> Self {
        Conn {
            state: State::Head {
                stream,
                buf: Vec::with_capacity(1024),
            },
            accepted: now,
            ws_opened: None,
            peer: None,
            bound: false,
            last_frame: None,
            limits,
            bucket: TokenBucket {
                tokens: limits.message_burst,
                last: now,
            },
        }
    }

    /// Whether the request head (or its body) is still being read, or an
    /// ICE-TCP connection has not yet been taken by a session: the head timeout
    /// applies to all of them, so slow heads, slow bodies and junk frames close alike.
    pub fn reading_head(&self) -> bool {
        match self.state {
            State::Head { .. } | State::Body { .. } => true,
            State::Framed { .. } => !self.bound,
            _ => false,
        }
    }

    /// Whether this is an ICE-TCP connection.
    pub fn is_ice_tcp(&self) -> bool {
        matches!(self.state, State::Framed { .. })
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
            State::Head { stream, .. }
            | State::Body { stream, .. }
            | State::Framed { stream, .. }
            | State::Routed { stream }
            | State::Respond { stream, .. } => Some(stream),
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
            } => match read_head(&mut stream, &mut buf, &self.limits) {
                Err(()) => State::Done,
                Ok(None) => State::Head { stream, buf },
                Ok(Some(Routing::Body(pending))) => State::Body { stream, pending },
                Ok(Some(Routing::Respond(bytes, upgrade))) => State::Respond {
                    stream,
                    out: bytes,
                    pos: 0,
                    upgrade,
                },
                Ok(Some(Routing::Framed(rbuf))) => {
                    out.push(ConnEvent::IceTcpOpened);
                    State::Framed {
                        stream,
                        rbuf,
                        wbuf: Vec::new(),
                        wpos: 0,
                    }
                }
                Ok(Some(Routing::Server(route, head))) => {
                    out.push(ConnEvent::Request {
                        route,
                        head,
                        param: String::new(),
                        body: Vec::new(),
                    });
                    State::Routed { stream }
                }
            },
            State::Body {
                mut stream,
                mut pending,
            } => match read_body(&mut stream, &mut pending.body, pending.len) {
                Err(()) => State::Done,
                Ok(false) => State::Body { stream, pending },
                Ok(true) => {
                    let PendingBody {
                        route,
                        head,
                        param,
                        body,
                        ..
                    } = pending;
                    out.push(ConnEvent::Request {
                        route,
                        head,
                        param,
                        body,
                    });
                    State::Routed { stream }
                }
            },
            State::Routed { stream } => State::Routed { stream },
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
                    Some(Upgrade {
                        session_id,
                        token,
                        origin,
                        leftover,
                    }) => {
                        // tungstenite allocates its read buffer up front (128 KiB by
                        // default, which 1000 idle viewers would pin); 4 KiB holds the
                        // small messages, and an offer's frame reserves its own length.
                        let config = WebSocketConfig::default()
                            .read_buffer_size(WS_READ_BUFFER)
                            .max_message_size(Some(self.limits.max_message))
                            .max_frame_size(Some(self.limits.max_message))
                            .max_write_buffer_size(self.limits.max_write_buffer);
                        let ws = WebSocket::from_partially_read(
                            stream,
                            leftover,
                            Role::Server,
                            Some(config),
                        );
                        self.ws_opened = Some(Instant::now());
                        out.push(ConnEvent::Opened {
                            session_id,
                            token,
                            origin,
                        });
                        State::Ws {
                            ws: Box::new(ws),
                            closing: false,
                        }
                    }
                },
            },
            State::Ws { mut ws, closing } => {
                let before = out.len();
                let open = read_frames(&mut ws, out);
                let read = out.len() - before;
                if !closing && !self.admit(read) {
                    // Over the rate: act on none of this batch, say why, close.
                    out.truncate(before);
                    out.push(ConnEvent::RateLimited);
                    let _ = ws.send(Message::text(portcast_engine::signaling::server_error(
                        "rate_limited",
                        "too many messages on this connection; it is closed",
                    )));
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    State::Ws { ws, closing: true }
                } else if open {
                    State::Ws { ws, closing }
                } else {
                    State::Done
                }
            }
            State::Framed {
                mut stream,
                mut rbuf,
                wbuf,
                wpos,
            } => {
                let before = out.len();
                let open = read_frames_4571(&mut stream, &mut rbuf, out);
                if out.len() > before {
                    self.last_frame = Some(Instant::now());
                }
                if open {
                    State::Framed {
                        stream,
                        rbuf,
                        wbuf,
                        wpos,
                    }
                } else {
                    State::Done
                }
            }
            State::Done => State::Done,
        };
    }

    /// Queues one packet as an RFC 4571 frame on an ICE-TCP connection and
    /// writes what the socket takes; false when it was dropped because the
    /// viewer's queue is full (or this is no ICE-TCP connection).
    pub fn send_frame(&mut self, packet: &[u8]) -> bool {
        let State::Framed {
            stream, wbuf, wpos, ..
        } = &mut self.state
        else {
            return false;
        };
        let Ok(len) = u16::try_from(packet.len()) else {
            return false;
        };
        if wbuf.len() - *wpos + 2 + packet.len() > MAX_ICE_TCP_QUEUE {
            return false;
        }
        compact(wbuf, wpos);
        wbuf.extend_from_slice(&len.to_be_bytes());
        wbuf.extend_from_slice(packet);
        if write_some(stream, wbuf, wpos).is_err() {
            self.state = State::Done;
        }
        true
    }

    /// Answers a request the server routed to itself (see [`ConnEvent::Request`]).
    pub fn respond(&mut self, bytes: Vec<u8>) {
        if let State::Routed { stream } = std::mem::replace(&mut self.state, State::Done) {
            self.state = State::Respond {
                stream,
                out: bytes,
                pos: 0,
                upgrade: None,
            };
            let mut none = Vec::new();
            self.on_ready(&mut none);
        }
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

    /// Sends a last text frame, then starts a clean close.
    pub fn send_and_close(&mut self, text: String) {
        self.send_text(text);
        self.close();
    }

    /// Starts a clean close (close frame, then wait for the peer's).
    pub fn close(&mut self) {
        if let State::Ws { ws, closing } = &mut self.state {
            if !*closing {
                *closing = true;
                let _ = ws.close(None);
                let _ = ws.flush();
            }
        } else if matches!(
            self.state,
            State::Head { .. } | State::Body { .. } | State::Routed { .. }
        ) {
            self.state = State::Done;
        }
    }

    /// Drops the connection at once.
    pub fn abort(&mut self) {
        self.state = State::Done;
    }

    /// Writes what is buffered (on a writable event).
    pub fn flush(&mut self) {
        if let State::Framed {
            stream, wbuf, wpos, ..
        } = &mut self.state
        {
            match write_some(stream, wbuf, wpos) {
                Ok(_) => compact(wbuf, wpos),
                Err(_) => self.state = State::Done,
            }
            return;
        }
        if let State::Ws { ws, .. } = &mut self.state {
            match ws.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.state = State::Done,
            }
        }
    }

    /// Takes one token per message read; false when the connection is over its rate.
    fn admit(&mut self, messages: usize) -> bool {
        if messages == 0 {
            return true;
        }
        let now = Instant::now();
        let b = &mut self.bucket;
        let refill =
            now.saturating_duration_since(b.last).as_secs_f64() * self.limits.messages_per_sec;
        b.tokens = (b.tokens + refill).min(self.limits.message_burst);
        b.last = now;
        b.tokens -= messages as f64;
        b.tokens >= 0.0
    }
}

/// What to do once a request head is read.
enum Routing {
    /// Write this, then close or upgrade.
    Respond(Vec<u8>, Option<Upgrade>),
    /// The loop answers route `.0` of the routes table.
    Server(usize, Head),
    /// ICE-TCP: RFC 4571 frames follow (the bytes read so far).
    Framed(Vec<u8>),
    /// Read the body, then the loop answers.
    Body(PendingBody),
}

/// A routed request whose `len`-byte body is being read (`body` holds what came so far).
struct PendingBody {
    route: usize,
    head: Head,
    param: String,
    body: Vec<u8>,
    len: usize,
}

/// Reads what is there; Ok(Some) says what to do, Ok(None) needs more bytes, Err closes.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &ConnLimits,
) -> Result<Option<Routing>, ()> {
    let max_head = limits.max_head;
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
    // No HTTP method starts with a control byte; an RFC 4571 length prefix of
    // a STUN request (under 1 KiB) does.
    if limits.ice_tcp_only || (limits.ice_tcp && buf.first().is_some_and(|b| *b < 0x20)) {
        return Ok(Some(Routing::Framed(std::mem::take(buf))));
    }
    let head = match http::parse_head(buf, max_head) {
        Ok(None) => return Ok(None),
        Ok(Some(h)) => h,
        Err(e) => return Ok(Some(refuse(stream, e))),
    };
    let (head, len) = head;
    let len_head = len;
    let (route, param) = match http::route(ROUTES, &head) {
        Ok(r) => r,
        Err(e) => return Ok(Some(refuse(stream, e))),
    };
    let routing = match ROUTES[route].answer {
        Answer::Respond(_) => Routing::Server(route, head),
        Answer::Act(_) => match head.body_len(limits.max_message) {
            Ok(len) => {
                let mut body = buf.get(len_head..).unwrap_or_default().to_vec();
                body.truncate(len);
                Routing::Body(PendingBody {
                    route,
                    param: param.to_string(),
                    head,
                    body,
                    len,
                })
            }
            Err(e) => refuse(stream, e),
        },
        Answer::WebSocket => match head.websocket(param) {
            Ok(ws) => {
                let leftover = buf.get(len..).unwrap_or_default().to_vec();
                Routing::Respond(
                    http::upgrade_response(&ws.key),
                    Some(Upgrade {
                        session_id: ws.session_id,
                        token: ws.token,
                        origin: ws.origin,
                        leftover,
                    }),
                )
            }
            Err(e) => refuse(stream, e),
        },
    };
    Ok(Some(routing))
}

/// Reads the rest of a `len`-byte body; Ok(true) once it is whole, Err when the peer left.
fn read_body(stream: &mut TcpStream, body: &mut Vec<u8>, len: usize) -> Result<bool, ()> {
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
    Ok(true)
}

/// Reads every complete frame; false when the connection is over.
fn read_frames(ws: &mut WebSocket<TcpStream>, out: &mut Vec<ConnEvent>) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => out.push(ConnEvent::Text(t.as_str().to_string())),
            Ok(Message::Binary(_)) => out.push(ConnEvent::Binary),
            Ok(_) => {} // ping/pong/close: tungstenite queues the reply
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

fn refuse(stream: &TcpStream, e: HttpError) -> Routing {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    log::info!("http {peer}: refused: {e:?}");
    Routing::Respond(e.response(), None)
}
