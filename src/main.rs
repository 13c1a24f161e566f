fn main() {
    std::process::exit(rclaude::cli::main());
}
