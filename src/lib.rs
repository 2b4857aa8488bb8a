//! ringmq: a thread-per-core MQTT broker.
pub mod codec;
pub mod router;
pub mod session;
