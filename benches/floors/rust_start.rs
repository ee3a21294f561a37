//! The start-up floor of a Rust program as memslice starts: built as
//! memslice is (benches/floors/build-rust-start), linked dynamically
//! against the C library and libgcc_s, and with its own C `main`, as
//! memslice's (src/main.rs), so std's runtime set-up is skipped too. The
//! loader and the C library's start and exit, and nothing else: what
//! every memslice command pays before its first line runs, and a static C
//! program does not.
#![no_main]

#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    0
}
