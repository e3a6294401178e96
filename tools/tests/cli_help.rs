//! `cargo run --release` runs `spinwire` with no arguments: it must print useful help and succeed.

use std::process::Command;

#[test]
fn spinwire_without_a_command_prints_its_commands_and_succeeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_spinwire"))
        .output()
        .expect("run spinwire");
    assert!(out.status.success(), "exit status {:?}", out.status);
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["sim", "tap", "report"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "help does not list `{command}`:\n{help}"
        );
    }
}
