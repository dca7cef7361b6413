//! Shared test harness (filled in below).
