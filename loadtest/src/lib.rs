//! loadtest library.
