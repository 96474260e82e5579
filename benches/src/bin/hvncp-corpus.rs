//! Write the fuzz seed corpus: `hvncp-corpus <dir>` creates `<dir>/frame/seed-<name>.bin`
//! for each golden frame of [`hvncp_benches::golden_frames`].
//!
//! Run from the workspace root as `cargo run -p hvncp-benches --bin hvncp-corpus -- fuzz/corpus`.
//! The output is deterministic, so re-running it leaves the committed seeds unchanged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::{env, fs, io};

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: hvncp-corpus <corpus dir>");
        return ExitCode::from(2);
    };
    match write_frame_seeds(PathBuf::from(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvncp-corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Seeds of the `frame` fuzz target: whole Ethernet frames.
fn write_frame_seeds(corpus: PathBuf) -> io::Result<()> {
    let dir = corpus.join("frame");
    fs::create_dir_all(&dir)?;
    for golden in hvncp_benches::golden_frames() {
        let path = dir.join(format!("seed-{}.bin", golden.name));
        fs::write(&path, &golden.bytes)?;
        println!("{} ({} bytes)", path.display(), golden.bytes.len());
    }
    Ok(())
}
