//! Operator commands of the same binary.

pub mod doctor;
pub mod smoke;
