//! One module per coordinated procedure.

pub mod deploy;
pub mod orders;
