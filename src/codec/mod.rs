//! MQTT 3.1.1 / 5.0 codec, sans-IO.
//!
//! [`decode`] takes bytes the server read from a client, [`decode_any`] any
//! packet kind (clients, load generator, tests); [`encode`] appends a packet
//! to an output buffer and [`encoded_len`] says how long it would be without
//! encoding it. Decoded strings and payloads are slices of the input buffer.
//!
//! One file per group of packet kinds; `wire` holds the primitive types,
//! `properties` the v5 property sets, `frame` the fixed header and the entry
//! points.
mod bytestr;
mod connect;
mod disconnect;
mod error;
mod frame;
mod properties;
mod publish;
mod reason;
mod subscribe;
mod types;
mod wire;

#[cfg(test)]
mod tests;

pub use bytestr::{ByteStr, Utf8Error};
pub use error::{DecodeError, EncodeError};
pub use frame::{decode, decode_any, encode, encode_publish, encode_short_ack, encoded_len};
pub use types::*;
