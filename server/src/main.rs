fn main() {
    println!("rclaude-server: not yet implemented");
}
