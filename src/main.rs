#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    herald::cli::main()
}
