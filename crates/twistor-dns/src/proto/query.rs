//! The client's query state machine.
