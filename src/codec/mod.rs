//! MQTT 3.1.1 / 5.0 codec, sans-IO.
mod bytestr;
mod types;

pub use bytestr::{ByteStr, Utf8Error};
pub use types::*;
