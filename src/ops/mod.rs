//! Operator commands of the same binary.

pub mod admin;
