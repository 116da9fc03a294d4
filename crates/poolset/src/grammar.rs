//! The poolset(5) file grammar and the size math of a pool set.
