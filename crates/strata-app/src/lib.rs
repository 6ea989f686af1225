//! Strata's application layer: procedures that coordinate several parts of the system, so
//! that the HTTP API, the gRPC service and the CLI call one implementation and none of them
//! depends on another.
//!
//! A guided tour:
//! * [`services`]: procedures. [`deploy`]: the blue/green switch (validate the target stack
//!   through its own gRPC `ClusterService`, announce, flip, drain, record), run by
//!   `strata deploy` and by the admin API. [`orders`]: creating a buy order (idempotency,
//!   price, the store's transaction, waking the relay).
//! * [`ports`]: what lies outside Strata: the exchange-rate source and the event bus.
//! * [`jobs`]: background work (the outbox relay, the NATS projector) under one
//!   [`jobs::Supervisor`] with one shutdown path.
//!
//! Storage stays in `strata-store`; protocols stay in `strata-http` and `strata-grpc`.

pub mod jobs;
pub mod ports;
pub mod services;

pub use services::{deploy, orders};
