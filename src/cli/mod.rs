//! The `sandload` binary's own modules (not part of the library): finding the inputs of an
//! `inspect` run, and writing its reports as text or SARIF.

pub mod human;
pub mod sarif;
pub mod walk;
