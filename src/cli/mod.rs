//! The subcommands: argument structs (clap) and what each prints. The work
//! itself is the library's.

pub mod analyze;
pub mod args;
pub mod bars;
pub mod bench;
#[cfg(feature = "clip")]
pub mod model;
#[cfg(feature = "viewer")]
pub mod view;
