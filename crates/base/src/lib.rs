//! What every layer shares and none owns: the one error type, the clock,
//! the process's metrics registry and the name of the OS account it runs
//! as. Nothing here knows of tasks, SQL or HTTP.

pub mod error;
pub mod metrics;
pub mod os_user;
pub mod time;
