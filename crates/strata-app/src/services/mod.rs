//! One module per coordinated procedure.

pub mod deploy;
