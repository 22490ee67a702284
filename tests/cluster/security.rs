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

    // Right protocol, wrong secret: the first frame fails authentication.
    let wrong = Secret::new(b"not-the-region-secret-000".to_vec());
    let mut s = Session::connect(&raft_addr, &wrong, 99, Duration::from_secs(1)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), s.call(&RpcRequest::Status)).await.unwrap();
    assert!(reply.is_err(), "a stranger got an answer: {reply:?}");

    // A forwarded membership change from a stranger is refused the same way.
    let mut s = Session::connect(&raft_addr, &wrong, 99, Duration::from_secs(1)).await.unwrap();
    let join = RpcRequest::Forward(meridian_region::raft::transport::ForwardOp::AddMember {
        id: 99,
        address: "127.0.0.1:1".into(),
    });
    assert!(tokio::time::timeout(Duration::from_secs(2), s.call(&join)).await.unwrap().is_err());

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
