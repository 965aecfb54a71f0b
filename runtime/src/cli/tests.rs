//! CLI parsing tests.
