//! VOLT testkit.
