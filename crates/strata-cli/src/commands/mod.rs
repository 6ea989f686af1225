//! One module per subcommand: its arguments (clap) and what it does. Each runs against the
//! storage `main` opened; none knows about the others, except that `demo` serves like `serve`.

pub(crate) mod backup;
pub(crate) mod dataset;
pub(crate) mod deploy;
pub(crate) mod load;
pub(crate) mod migrate;
pub(crate) mod orders;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod tenant;
