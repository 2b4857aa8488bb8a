//! CA and node certificates for a first cluster (see `super`).
