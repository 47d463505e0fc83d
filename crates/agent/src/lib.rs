//! stub
pub mod cli;
pub mod config;
pub mod error;
pub use cli::{Cli, Command, Flags, LogFormat};
pub use config::Config;
