//! The HTTP API, exercised against the real server on port 0 with a fresh database per test.
//! Every behavioural test runs twice: on SQLite (`sqlite::`) and on PostgreSQL (`postgres::`).

mod helpers;

mod auth;
mod backups;
mod bluegreen;
mod dashboard;
mod datasets;
mod grpc;
mod hostile;
mod ingest;
mod isolation;
mod limits;
mod load;
mod operations;
mod orders;
mod orders_nats;
mod reports;
mod rows;
