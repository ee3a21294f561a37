//! Test program for the VM scenarios: allocates and touches memory so the
//! kernel really charges it, then holds it.
//!
//! `hog SIZE [HOLD_SECONDS]`: SIZE as in slices.toml ("300M"); prints one
//! line per 16 MiB so a scenario log shows how far it got before a kill.

use std::time::Duration;

use memslice::config::Size;

const CHUNK: usize = 1 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(Ok(Size::Bytes(total))) = args.next().map(|arg| Size::parse(&arg)) else {
        eprintln!("usage: hog SIZE [HOLD_SECONDS]   (SIZE like 300M)");
        std::process::exit(2);
    };
    let hold: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut allocated: u64 = 0;
    while allocated < total {
        // A non-zero fill writes every page, so nothing stays a shared zero page.
        held.push(vec![0xA5; CHUNK]);
        allocated += CHUNK as u64;
        if allocated % (16 << 20) == 0 {
            println!("hog: {} MiB", allocated >> 20);
        }
    }
    println!("hog: holding {} MiB for {hold}s", allocated >> 20);
    std::thread::sleep(Duration::from_secs(hold));
    println!("hog: done, {} chunks", held.len());
}
