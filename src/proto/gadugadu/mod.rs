//! Gadu-Gadu.
