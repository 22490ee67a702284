//! Any UDP packet to the balancer's DNS handler: no panic, and what comes
//! back is a well-formed answer to the same query id that fits the client's
//! buffer.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use meridian_gslb::dns::{sample_handler, GslbHandler};

static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));
static HANDLER: LazyLock<GslbHandler> = LazyLock::new(|| sample_handler().expect("the sample zone builds"));

fuzz_target!(|data: &[u8]| {
    let src = SocketAddr::from(([192, 0, 2, 77], 5353));
    if let Some(answer) = RT.block_on(HANDLER.answer_packet(data, src)) {
        let m = Message::from_vec(&answer).expect("the answer decodes");
        assert!(answer.len() <= 1232, "{} bytes", answer.len());
        assert_eq!(m.metadata.id, u16::from_be_bytes([data[0], data[1]]));
    }
});
