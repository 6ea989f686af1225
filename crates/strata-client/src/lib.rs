//! Rust connector for Strata's query service, which speaks the e6data `QueryEngineService`
//! gRPC protocol, plus the wire formats both sides share.
//!
//! * [`Connection`] / [`Cursor`]: connect, execute, fetch typed rows, cancel, clear, list
//!   schemas, tables and columns; follows blue/green switches (see [`connection`]).
//! * [`wire`]: the result metadata and Thrift chunk encodings.
//! * [`proto`]: the generated protobuf types and gRPC stubs.

pub mod connection;
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    // Package-less protos are generated into `_.rs`.
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub mod wire;

pub use connection::{Column, Config, Connection, Cursor, Error, QueryHandle, Row};
pub use wire::Value;
