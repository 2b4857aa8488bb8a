//! Sans-IO cluster logic (see `super`).
