//! placeholder during files build
