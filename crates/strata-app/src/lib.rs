//! Strata's application layer: procedures that coordinate several parts of the system, so
//! that the HTTP API, the gRPC service and the CLI call one implementation and none of them
//! depends on another.
//!
//! A guided tour:
//! * [`deploy`]: the blue/green switch (validate the target stack through its own gRPC
//!   `ClusterService`, announce, flip, drain, record), run by `strata deploy` and by the
//!   admin API.
//!
//! Storage stays in `strata-store`; protocols stay in `strata-http` and `strata-grpc`. The
//! order service, the outbox relay and the projector move here next (issue 12), with one
//! supervisor for every background job.

pub mod services;

pub use services::deploy;
