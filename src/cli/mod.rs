//! The `sandload` binary's own modules (not part of the library): the command line, finding the
//! inputs of a run, `inspect` and `convert`, atomic writes, and the text and SARIF outputs.

pub mod args;
pub mod convert;
pub mod exit;
pub mod human;
pub mod inspect;
pub mod sarif;
pub mod walk;
pub mod write;
