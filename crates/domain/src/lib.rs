//! Pure rules, no I/O: what a status may become, which settings are valid,
//! when a task may be done, which worker may run which model.

pub mod access;
pub mod diff;
pub mod model_filter;
pub mod prices;
pub mod repo;
pub mod settings;
pub mod task;
