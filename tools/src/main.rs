//! The `spinwire` command.
fn main() {
    println!("spinwire: being written");
}
