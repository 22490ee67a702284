use std::time::Duration;

use meridian_region::raft::transport::{RpcRequest, RpcResponse, Secret, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Region;
use crate::support::*;

#[tokio::test]
async fn a_peer_without_the_secret_cannot_append_or_join() {
    let r = Region::start(3, "").await;
    r.converged(1).await;
    let target = r.node(1);
    let raft_addr = target.region.as_ref().unwrap().bound.to_string();

    // Right protocol, wrong secret: the handshake's proof fails, no link.
    let wrong = Secret::new(b"not-the-region-secret-000".to_vec());
    for _ in 0..2 {
        let s = Session::connect(&raft_addr, &wrong, 99, Duration::from_secs(1)).await;
        assert!(s.is_err(), "a stranger got a link");
    }

    // Not even the protocol: garbage is dropped.
    let mut raw = tokio::net::TcpStream::connect(&raft_addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901234567890").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "no answer to garbage");

    let m = metrics(target.admin_addr).await;
    assert!(metric_value(&m, "meridian_raft_refused_peers_total", &[]) >= 3.0, "{m}");
    // Membership unchanged.
    let cluster = admin(target.admin_addr, "GET", "/cluster", "").await.json();
    assert_eq!(cluster["members"].as_array().unwrap().len(), 3);

    // With the secret, the same transport answers.
    let right = Secret::new(b"region-secret-for-tests-0123456789".to_vec());
    let mut s = Session::connect(&raft_addr, &right, 7, Duration::from_secs(1)).await.unwrap();
    match s.call(&RpcRequest::Status).await.unwrap() {
        RpcResponse::Status(st) => assert_eq!(st.id, 2),
        other => panic!("{other:?}"),
    }
    r.shutdown().await;
}

/// The hello of the handshake, as a peer sends it.
fn hello() -> Vec<u8> {
    let mut h = b"MRDN".to_vec();
    h.push(2);
    h.extend([7u8; 16]);
    h.extend(99u64.to_be_bytes());
    h
}

#[tokio::test]
async fn an_unproven_peer_cannot_make_a_node_allocate_or_wait() {
    let r = Region::start(3, "").await;
    r.converged(1).await;
    let target = r.node(1);
    let raft_addr = target.region.as_ref().unwrap().bound.to_string();
    // After the hello, a stranger sends what a frame of 64 MiB starts with.
    // The node reads 32 bytes as the proof, finds them wrong and hangs up at
    // once: it never reads a length, allocates for it or waits for a body.
    let mut raw = tokio::net::TcpStream::connect(&raft_addr).await.unwrap();
    raw.write_all(&hello()).await.unwrap();
    let mut nonce = [0u8; 16];
    raw.read_exact(&mut nonce).await.unwrap();
    let mut frame = (64u32 << 20).to_be_bytes().to_vec();
    frame.extend([0u8; 28]);
    raw.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the node is still waiting for the stranger");
    assert!(rest.is_empty(), "the node answered a stranger: {rest:?}");
    let refused = metric_value(&metrics(target.admin_addr).await, "meridian_raft_refused_peers_total", &[]);
    assert!(refused >= 1.0);

    // One source address holds at most 64 links; the next is closed at once.
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(tokio::net::TcpStream::connect(&raft_addr).await.unwrap());
    }
    let mut over = tokio::net::TcpStream::connect(&raft_addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(1), over.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert!(
        eventually(Duration::from_secs(2), || async {
            metric_value(&metrics(target.admin_addr).await, "meridian_raft_refused_peers_total", &[]) > refused
        })
        .await
    );
    drop(held);
    // With the secret, links work as before.
    let right = Secret::new(b"region-secret-for-tests-0123456789".to_vec());
    assert!(
        eventually(Duration::from_secs(5), || async {
            Session::connect(&raft_addr, &right, 7, Duration::from_secs(1)).await.is_ok()
        })
        .await
    );
    r.shutdown().await;
}
