//! Builtin store tests (real files in a temp dir).
