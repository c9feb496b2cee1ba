//! panel library.
