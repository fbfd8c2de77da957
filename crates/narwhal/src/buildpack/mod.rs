//! The Heroku buildpack's logic; `buildpack/bin/*` are shells around it.

pub mod config;
pub mod errors;
pub mod heroku;
