//! VOLT mock server.
