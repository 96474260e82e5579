//! `hactl`: the control plane daemon (`hactl run`) and operator CLI.

fn main() {
    eprintln!("hactl: not implemented yet");
    std::process::exit(2);
}
