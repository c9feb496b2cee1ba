//! agent library.
