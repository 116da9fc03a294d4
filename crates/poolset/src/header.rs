//! The 4 KiB PMDK pool header: decode, validate, encode and checksum.
