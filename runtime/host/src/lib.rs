//! The Wasm sandbox host: runs one event through a handler module (component or command ABI) under limits.
