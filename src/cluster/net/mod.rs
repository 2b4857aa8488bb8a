//! The cluster thread (see `super`).
