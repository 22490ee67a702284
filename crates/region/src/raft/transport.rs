//! The region's Raft transport: length-prefixed bincode frames over TCP.
//!
//! Every connection starts with a handshake of fixed-size messages that
//! binds it to fresh nonces from both sides and makes each side prove it
//! holds the cluster secret before anything of variable length is read: a
//! stranger gets to send 29 + 32 bytes, then the connection is closed. Every
//! frame then carries a sequence number and an HMAC-SHA256 under a key
//! derived from the secret and those nonces, so a recorded frame is useless
//! on another connection (other nonces) or replayed on the same one
//! (sequence numbers only go up). Whatever fails is refused, counted, and the
//! connection closed. Established links have TCP keepalive and close after
//! [`IDLE_TIMEOUT`] without a frame; a source address holds at most
//! [`MAX_CONNECTIONS_PER_SOURCE`] connections at once.
//!
//! ```text
//! client → server   "MRDN" 2 | client nonce (16) | node id (8)
//! server → client   server nonce (16)
//! client → server   HMAC-SHA256(key, "client" | node id)          (32)
//! server → client   HMAC-SHA256(key, "server")                    (32)
//! frame             len (4, big-endian) | seq (8) | body | HMAC (32)
//!                   HMAC = HMAC-SHA256(key, direction | seq | body)
//!                   key  = HMAC-SHA256(secret, "meridian-raft-v2" | client nonce | server nonce)
//! ```

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{bincode_config, Command, CommandResult, NodeId, TypeConfig};
use meridian_dataplane::proxy::ConnectionCaps;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"MRDN";
const PROTOCOL: u8 = 2;
/// Snapshots are sent in chunks well below this.
const MAX_FRAME: usize = 64 << 20;
const MAC_LEN: usize = 32;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes a peer sends before it has proved it holds the secret.
pub const HANDSHAKE_BYTES: usize = 29 + MAC_LEN;
/// An established link with no frame for this long is closed (a client
/// reopens its pooled link well before: [`CLIENT_REUSE`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A pooled link idle for longer is reopened rather than reused.
const CLIENT_REUSE: Duration = Duration::from_secs(30);
/// Connections one source address may hold open at once.
pub const MAX_CONNECTIONS_PER_SOURCE: u32 = 64;
/// Connections the listener holds open at once.
const MAX_CONNECTIONS: usize = 1024;

/// The cluster secret. Never printed.
#[derive(Clone)]
pub struct Secret(Arc<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A request between members.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write or membership change sent to the leader by another member.
    Forward(ForwardOp),
    /// This member's status, for `GET /cluster`.
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Result<CommandResult, ForwardError>),
    Status(super::NodeStatus),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardOp {
    Write(Command),
    AddMember { id: NodeId, address: String },
    RemoveMember { id: NodeId },
}

/// Why a forwarded operation was not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("not committed within {timeout_ms} ms: no quorum")]
    NoQuorum { timeout_ms: u64 },
    #[error("{0}")]
    Refused(String),
}

/// HMAC takes keys of any length, so the fallback is never used.
fn hmac_with(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

fn session_key(secret: &Secret, client_nonce: &[u8; 16], server_nonce: &[u8; 16]) -> [u8; 32] {
    let mut mac = hmac_with(&secret.0);
    mac.update(b"meridian-raft-v2");
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac.finalize().into_bytes().into()
}

/// What a side sends to prove it holds the secret (`role`: `client` with
/// its node id, or `server`).
fn proof(key: &[u8; 32], role: &[u8], id: Option<NodeId>) -> HmacSha256 {
    let mut mac = hmac_with(key);
    mac.update(role);
    if let Some(id) = id {
        mac.update(&id.to_be_bytes());
    }
    mac
}

fn keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(10)).with_interval(Duration::from_secs(5));
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
}

fn frame_mac(key: &[u8; 32], direction: u8, seq: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = hmac_with(key);
    mac.update(&[direction]);
    mac.update(&seq.to_be_bytes());
    mac.update(body);
    mac
}

/// Decoding a frame never claims more memory than a frame may hold.
fn frame_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
> {
    bincode_config().with_limit::<MAX_FRAME>()
}

fn denied(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg.to_string())
}

/// An authenticated connection.
pub struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    key: [u8; 32],
    /// 0 for frames the client sends, 1 for the server's.
    send_dir: u8,
    send_seq: u64,
    recv_seq: u64,
}

impl Session {
    fn new(stream: TcpStream, key: [u8; 32], client: bool) -> Self {
        let (r, w) = stream.into_split();
        Self {
            reader: BufReader::new(r),
            writer: BufWriter::new(w),
            key,
            send_dir: if client { 0 } else { 1 },
            send_seq: 0,
            recv_seq: 0,
        }
    }

    /// Connect and run the client half of the handshake.
    pub async fn connect(addr: &str, secret: &Secret, my_id: NodeId, timeout: Duration) -> io::Result<Session> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let mut stream = stream;
        let client_nonce: [u8; 16] = nonce()?;
        keepalive(&stream);
        let handshake = async {
            let mut hello = Vec::with_capacity(29);
            hello.extend_from_slice(MAGIC);
            hello.push(PROTOCOL);
            hello.extend_from_slice(&client_nonce);
            hello.extend_from_slice(&my_id.to_be_bytes());
            stream.write_all(&hello).await?;
            let mut server_nonce = [0u8; 16];
            stream.read_exact(&mut server_nonce).await?;
            let key = session_key(secret, &client_nonce, &server_nonce);
            stream.write_all(&proof(&key, b"client", Some(my_id)).finalize().into_bytes()).await?;
            let mut theirs = [0u8; MAC_LEN];
            stream.read_exact(&mut theirs).await?;
            proof(&key, b"server", None)
                .verify_slice(&theirs)
                .map_err(|_| denied("the server does not hold the cluster secret"))?;
            Ok::<_, io::Error>(key)
        };
        let key = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
        Ok(Session::new(stream, key, true))
    }

    /// Run the server half of the handshake on an accepted stream.
    pub async fn accept(mut stream: TcpStream, secret: &Secret) -> io::Result<(Session, NodeId)> {
        let _ = stream.set_nodelay(true);
        keepalive(&stream);
        // Fixed sizes only until the peer has proved the secret.
        let handshake = async {
            let mut hello = [0u8; 29];
            stream.read_exact(&mut hello).await?;
            if &hello[..4] != MAGIC || hello[4] != PROTOCOL {
                return Err(denied("not a meridian raft peer of this protocol version"));
            }
            let mut client_nonce = [0u8; 16];
            client_nonce.copy_from_slice(&hello[5..21]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&hello[21..29]);
            let peer = u64::from_be_bytes(id);
            let server_nonce: [u8; 16] = nonce()?;
            stream.write_all(&server_nonce).await?;
            let key = session_key(secret, &client_nonce, &server_nonce);
            let mut theirs = [0u8; MAC_LEN];
            stream.read_exact(&mut theirs).await?;
            proof(&key, b"client", Some(peer))
                .verify_slice(&theirs)
                .map_err(|_| denied("the peer does not hold the cluster secret"))?;
            stream.write_all(&proof(&key, b"server", None).finalize().into_bytes()).await?;
            Ok::<_, io::Error>((key, peer))
        };
        let (key, peer) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
        Ok((Session::new(stream, key, false), peer))
    }

    pub async fn send(&mut self, body: &[u8]) -> io::Result<()> {
        let seq = self.send_seq;
        self.send_seq += 1;
        let tag = frame_mac(&self.key, self.send_dir, seq, body).finalize().into_bytes();
        let len = 8 + body.len() + MAC_LEN;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame too large"));
        }
        self.writer.write_all(&(len as u32).to_be_bytes()).await?;
        self.writer.write_all(&seq.to_be_bytes()).await?;
        self.writer.write_all(body).await?;
        self.writer.write_all(&tag).await?;
        self.writer.flush().await
    }

    /// The next frame's body, once its sequence number and MAC check out.
    pub async fn recv(&mut self) -> io::Result<Vec<u8>> {
        let len = self.reader.read_u32().await? as usize;
        if !(8 + MAC_LEN..=MAX_FRAME).contains(&len) {
            return Err(denied("bad frame length"));
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf).await?;
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&buf[..8]);
        let seq = u64::from_be_bytes(seq_bytes);
        let body_end = len - MAC_LEN;
        let recv_dir = 1 - self.send_dir;
        frame_mac(&self.key, recv_dir, seq, &buf[8..body_end])
            .verify_slice(&buf[body_end..])
            .map_err(|_| denied("frame authentication failed"))?;
        if seq != self.recv_seq {
            return Err(denied("frame out of sequence (replayed?)"));
        }
        self.recv_seq += 1;
        buf.truncate(body_end);
        buf.drain(..8);
        Ok(buf)
    }

    pub async fn call(&mut self, req: &RpcRequest) -> io::Result<RpcResponse> {
        let body = bincode::serde::encode_to_vec(req, bincode_config()).map_err(io::Error::other)?;
        self.send(&body).await?;
        let reply = self.recv().await?;
        bincode::serde::decode_from_slice(&reply, frame_config()).map(|(r, _)| r).map_err(io::Error::other)
    }
}

/// How a one-off call failed: before anything was sent (safe to retry
/// elsewhere) or during the exchange (the outcome is unknown).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("exchange: {0}")]
    Exchange(io::Error),
}

/// One request on a fresh connection (forwarded writes, status queries).
pub async fn call_once(
    addr: &str,
    secret: &Secret,
    my_id: NodeId,
    req: &RpcRequest,
    timeout: Duration,
) -> Result<RpcResponse, CallError> {
    let mut s =
        Session::connect(addr, secret, my_id, timeout.min(Duration::from_secs(1))).await.map_err(CallError::Connect)?;
    match tokio::time::timeout(timeout, s.call(req)).await {
        Ok(r) => r.map_err(CallError::Exchange),
        Err(_) => Err(CallError::Exchange(io::Error::new(io::ErrorKind::TimedOut, "call timed out"))),
    }
}

/// Serves requests of other members.
pub trait RpcHandler: Send + Sync + 'static {
    fn handle(&self, req: RpcRequest) -> impl std::future::Future<Output = RpcResponse> + Send;
    /// A peer failed authentication.
    fn refused(&self, peer: std::net::SocketAddr, why: &io::Error);
}

/// Accept member connections until `shutdown`.
pub async fn serve<H: RpcHandler>(listener: TcpListener, handler: Arc<H>, secret: Secret, shutdown: CancellationToken) {
    let caps = ConnectionCaps::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let admitted = match caps.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                handler.refused(peer, &denied(&format!("connection over the cap ({})", why.label())));
                continue;
            }
        };
        let handler = handler.clone();
        let secret = secret.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let session = tokio::select! {
                _ = shutdown.cancelled() => return,
                s = Session::accept(stream, &secret) => s,
            };
            let (mut session, _peer_id) = match session {
                Ok(s) => s,
                Err(e) => {
                    handler.refused(peer, &e);
                    return;
                }
            };
            loop {
                let body = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    b = session.recv() => b,
                    _ = tokio::time::sleep(IDLE_TIMEOUT) => {
                        tracing::debug!(%peer, "closing an idle raft link");
                        return;
                    }
                };
                let body = match body {
                    Ok(b) => b,
                    Err(e) => {
                        if e.kind() == io::ErrorKind::PermissionDenied {
                            handler.refused(peer, &e);
                        }
                        return;
                    }
                };
                let req: RpcRequest = match bincode::serde::decode_from_slice(&body, frame_config()) {
                    Ok((r, _)) => r,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "undecodable raft request from an authenticated peer");
                        return;
                    }
                };
                let resp = handler.handle(req).await;
                let bytes = match bincode::serde::encode_to_vec(&resp, bincode_config()) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a raft response");
                        return;
                    }
                };
                if session.send(&bytes).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Creates a client per peer for openraft.
#[derive(Clone)]
pub struct Network {
    pub secret: Secret,
    pub my_id: NodeId,
    /// Wait between attempts to an unreachable peer.
    pub backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), net: self.clone(), session: None, last_used: None }
    }
}

/// A connection to one peer, reused across calls and re-opened after errors.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    net: Network,
    session: Option<Session>,
    /// A link idle for [`CLIENT_REUSE`] is reopened before the server's
    /// idle timeout could close it under a call.
    last_used: Option<tokio::time::Instant>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<E: std::error::Error>(&mut self, req: RpcRequest, ttl: Duration) -> Result<RpcResponse, RpcErr<E>> {
        if self.last_used.is_some_and(|t| t.elapsed() >= CLIENT_REUSE) {
            self.session = None;
        }
        self.last_used = Some(tokio::time::Instant::now());
        if self.session.is_none() {
            let s = Session::connect(&self.addr, &self.net.secret, self.net.my_id, ttl.min(Duration::from_secs(1)))
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            self.session = Some(s);
        }
        let Some(session) = self.session.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&io::Error::other("no session"))));
        };
        match tokio::time::timeout(ttl, session.call(&req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.session = None;
                Err(RPCError::Network(NetworkError::new(&e)))
            }
            Err(_) => {
                // A late answer would desynchronise the connection: start over.
                self.session = None;
                Err(RPCError::Network(NetworkError::new(&io::Error::new(io::ErrorKind::TimedOut, "rpc timed out"))))
            }
        }
    }

    fn unexpected<E: std::error::Error>() -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&io::Error::other("unexpected response type")))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.call(RpcRequest::Append(rpc), option.hard_ttl()).await? {
            RpcResponse::Append(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(Self::unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(RpcRequest::Snapshot(rpc), option.hard_ttl()).await? {
            RpcResponse::Snapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(Self::unexpected()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await? {
            RpcResponse::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(Self::unexpected()),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }
}

/// A handshake nonce from the operating system's random source.
fn nonce() -> io::Result<[u8; 16]> {
    meridian_core::secret::random_bytes().map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_authenticate_and_refuse_strangers() {
        let secret = Secret::new(b"0123456789abcdef-secret".to_vec());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server_secret = secret.clone();
        let server = tokio::spawn(async move {
            // The good peer: a link, a frame each way.
            let (stream, _) = listener.accept().await.unwrap();
            let (mut s, peer) = Session::accept(stream, &server_secret).await.unwrap();
            assert_eq!(peer, 1);
            assert_eq!(s.recv().await.unwrap(), b"hello");
            s.send(b"back").await.unwrap();
            // The stranger: refused in the handshake, before any frame.
            let (stream, _) = listener.accept().await.unwrap();
            Session::accept(stream, &server_secret).await.err()
        });
        let mut good = Session::connect(&addr, &secret, 1, Duration::from_secs(1)).await.unwrap();
        good.send(b"hello").await.unwrap();
        assert_eq!(good.recv().await.unwrap(), b"back");
        let bad =
            Session::connect(&addr, &Secret::new(b"wrong-secret-wrong".to_vec()), 2, Duration::from_secs(1)).await;
        assert!(bad.is_err(), "a stranger got a link");
        let refused = server.await.unwrap().expect("the server refused the stranger");
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
    }
}
