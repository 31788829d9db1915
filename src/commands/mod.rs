//! Operator commands of the same binary.

pub mod admin;
pub mod doctor;
pub mod smoke;
