//! `hactl`: the control plane daemon (`hactl run`) and the operator's command line. The
//! commands live in `controlplane::cli`; `hactl --help` lists them with examples and the
//! exit codes.

fn main() -> std::process::ExitCode {
    controlplane::cli::main()
}
