//! The HR dataset of the seed, built in so `strata tenant create --dataset hr` needs no file.

use crate::dataset::{DatasetDef, Format};

/// The definition as users would write it (a good template for your own datasets).
pub const HR_TOML: &str = include_str!("hr.toml");

pub fn definition() -> DatasetDef {
    DatasetDef::parse(HR_TOML, Format::Toml).expect("the built-in HR dataset parses")
}
