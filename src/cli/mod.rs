//! Administration commands beside `serve`: `idgate customers ...` manages the customer
//! directory in the database `[store] url` names. `main.rs` only dispatches here.

pub mod customers;
