//! One file per CNI verb. Each takes typed arguments, so tests call them
//! without environment variables.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;
