//! ringmq: a thread-per-core MQTT broker.
pub mod codec;
pub mod config;
pub mod limits;
