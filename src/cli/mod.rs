//! Administration commands beside `serve`: `idgate customers ...` manages the customer
//! directory in the database `[store] url` names; `idgate keys ...` makes the token signing
//! key; `idgate token verify` checks a token offline; `idgate privacy ...` answers GDPR
//! requests and purges on demand. `main.rs` only dispatches here.

pub mod customers;
pub mod keys;
pub mod privacy;
pub mod token;
