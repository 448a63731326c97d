//! The exit-status contract: what each status means, and which one an error gives.

use crate::Error;

/// The exit-status contract, shown by `--help`.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  every input was accepted
  1  some input was refused (a verdict about the file: hostile, malformed, over a limit)
  2  usage error (bad arguments or options, an output that cannot be written)
  3  some input could not be read (missing, not a regular file, I/O error) or an internal error
     occurred; 3 wins over 1 when both happen";

/// Exit statuses, in increasing precedence.
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_IO: u8 = 3;

/// The status an inspect/convert of one input contributes.
pub fn status_of(e: &Error) -> u8 {
    if e.is_rejection() { EXIT_REFUSED } else { EXIT_IO }
}
